//! What a WAV file holds: the dominant frequency (FFT), the level and how
//! long a tone lasted, for the media tests and benchmarks.

use std::path::Path;

use rustfft::{FftPlanner, num_complex::Complex};

/// Analysis window for level and duration.
pub const WINDOW_MS: u32 = 20;

/// What [`analyze_wav`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneReport {
    pub sample_rate: u32,
    /// Length of the whole file.
    pub total_s: f64,
    /// Time in windows whose level is within `voiced_db` of the expected.
    pub voiced_s: f64,
    /// Median level of the voiced windows, dBFS (RMS; a full-scale sine is
    /// -3 dBFS).
    pub level_dbfs: f64,
    /// The strongest frequency over the voiced span, Hz.
    pub dominant_hz: f64,
    /// How far the dominant peak stands above the median of the spectrum, dB.
    pub peak_over_median_db: f64,
}

/// The RMS level of a sine of peak amplitude `volume`, dBFS.
pub fn sine_dbfs(volume: f64) -> f64 {
    20.0 * (volume / std::f64::consts::SQRT_2).log10()
}

fn dbfs(rms: f64) -> f64 {
    20.0 * rms.max(1e-9).log10()
}

/// The first channel of a WAV file as samples from -1 to 1.
pub fn read_wav(path: &Path) -> Result<(u32, Vec<f32>), String> {
    let reader = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = reader.spec();
    let ch = usize::from(spec.channels.max(1));
    let all: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?
        }
    };
    Ok((spec.sample_rate, all.into_iter().step_by(ch).collect()))
}

/// Level, duration and dominant frequency of the tone in `path`; a window
/// counts as voiced when its level is above `expected_dbfs - voiced_db`.
pub fn analyze_wav(path: &Path, expected_dbfs: f64, voiced_db: f64) -> Result<ToneReport, String> {
    let (rate, samples) = read_wav(path)?;
    Ok(analyze(rate, &samples, expected_dbfs, voiced_db))
}

pub fn analyze(rate: u32, samples: &[f32], expected_dbfs: f64, voiced_db: f64) -> ToneReport {
    let win = (rate * WINDOW_MS / 1000).max(1) as usize;
    let mut levels = Vec::new();
    let (mut first, mut last) = (None, 0);
    for (i, w) in samples.chunks(win).enumerate() {
        if w.len() < win {
            break;
        }
        let rms = (w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        let db = dbfs(rms);
        if db > expected_dbfs - voiced_db {
            levels.push(db);
            first.get_or_insert(i * win);
            last = (i + 1) * win;
        }
    }
    levels.sort_by(f64::total_cmp);
    let level_dbfs = levels
        .get(levels.len() / 2)
        .copied()
        .unwrap_or(f64::NEG_INFINITY);
    let voiced_s = (levels.len() * win) as f64 / f64::from(rate);
    let (dominant_hz, peak_over_median_db) = match first {
        Some(f) => dominant(rate, &samples[f..last]),
        None => (0.0, 0.0),
    };
    ToneReport {
        sample_rate: rate,
        total_s: samples.len() as f64 / f64::from(rate),
        voiced_s,
        level_dbfs,
        dominant_hz,
        peak_over_median_db,
    }
}

/// The strongest frequency (Hann window, parabolic interpolation on the log
/// magnitude) over at most the middle 2 s of `span`.
fn dominant(rate: u32, span: &[f32]) -> (f64, f64) {
    let n = span.len().min(2 * rate as usize);
    if n < 64 {
        return (0.0, 0.0);
    }
    let start = (span.len() - n) / 2;
    let mut buf: Vec<Complex<f64>> = span[start..start + n]
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
            Complex::new(f64::from(x) * hann, 0.0)
        })
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buf);
    let mags: Vec<f64> = buf[..n / 2].iter().map(|c| c.norm().max(1e-12)).collect();
    let bin_hz = f64::from(rate) / n as f64;
    let lo = (20.0 / bin_hz).ceil() as usize;
    let Some((k, _)) = mags
        .iter()
        .enumerate()
        .skip(lo.max(1))
        .take(mags.len().saturating_sub(lo.max(1) + 1))
        .max_by(|a, b| a.1.total_cmp(b.1))
    else {
        return (0.0, 0.0);
    };
    let (a, b, c) = (mags[k - 1].ln(), mags[k].ln(), mags[k + 1].ln());
    let denom = a - 2.0 * b + c;
    let offset = if denom.abs() > 1e-12 {
        0.5 * (a - c) / denom
    } else {
        0.0
    };
    let mut sorted = mags.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    (
        (k as f64 + offset) * bin_hz,
        20.0 * (mags[k] / median).log10(),
    )
}

/// The RMS level (dBFS) of the component at `hz` in `samples` (Goertzel
/// with a Hann window; exact when `hz` falls on a bin of `samples.len()`).
pub fn tone_level_dbfs(rate: u32, samples: &[f32], hz: f64) -> f64 {
    let n = samples.len();
    if n == 0 {
        return f64::NEG_INFINITY;
    }
    let w = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for (i, &x) in samples.iter().enumerate() {
        let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
        let s0 = f64::from(x) * hann + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // Hann's coherent gain is 1/2: amplitude = 2|X| / (n/2).
    let amplitude = 4.0 * power.max(0.0).sqrt() / n as f64;
    dbfs(amplitude / std::f64::consts::SQRT_2)
}

/// Panics, naming `what`, unless `r` holds a tone at `hz` (within 2 Hz),
/// at the level of a sine of peak `volume` (within 3 dB), for at least
/// `min_s` seconds: what "heard as sent" means in the media tests.
pub fn assert_heard(r: &ToneReport, hz: f64, volume: f64, min_s: f64, what: &str) {
    assert!(
        (r.dominant_hz - hz).abs() <= 2.0,
        "{what}: dominant {:.2} Hz, sent {hz}: {r:?}",
        r.dominant_hz
    );
    assert!(
        (r.level_dbfs - sine_dbfs(volume)).abs() <= 3.0,
        "{what}: level {:.2} dBFS, sent {:.2}: {r:?}",
        r.level_dbfs,
        sine_dbfs(volume)
    );
    assert!(
        r.voiced_s >= min_s,
        "{what}: heard {:.2} s, at least {min_s:.2} s expected: {r:?}",
        r.voiced_s
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, amp: f64, secs: f64) -> Vec<f32> {
        (0..(f64::from(rate) * secs) as usize)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn finds_frequency_level_and_duration() {
        let mut s = vec![0.0f32; 48_000];
        s.extend(sine(48_000, 440.0, 0.5, 3.0));
        s.extend(vec![0.0; 24_000]);
        let r = analyze(48_000, &s, sine_dbfs(0.5), 10.0);
        assert!((r.dominant_hz - 440.0).abs() < 0.2, "{r:?}");
        assert!((r.level_dbfs - sine_dbfs(0.5)).abs() < 0.1, "{r:?}");
        assert!((r.voiced_s - 3.0).abs() < 0.03, "{r:?}");
        assert!((r.total_s - 4.5).abs() < 1e-6);
        let r = analyze(
            48_000,
            &sine(48_000, 1000.7, 0.1, 1.0),
            sine_dbfs(0.1),
            10.0,
        );
        assert!((r.dominant_hz - 1000.7).abs() < 0.2, "{r:?}");
        let mut two = sine(48_000, 440.0, 0.3, 1.0);
        for (x, y) in two.iter_mut().zip(sine(48_000, 660.0, 0.1, 1.0)) {
            *x += y;
        }
        assert!((tone_level_dbfs(48_000, &two, 440.0) - sine_dbfs(0.3)).abs() < 0.1);
        assert!((tone_level_dbfs(48_000, &two, 660.0) - sine_dbfs(0.1)).abs() < 0.1);
        assert!(tone_level_dbfs(48_000, &two, 550.0) < sine_dbfs(0.1) - 40.0);
        // Silence has no tone.
        let r = analyze(48_000, &vec![0.0; 48_000], sine_dbfs(0.5), 10.0);
        assert_eq!((r.voiced_s, r.dominant_hz), (0.0, 0.0));
    }
}
