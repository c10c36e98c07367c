//! The desktop client stays in small pieces: no file under `src` over 500
//! lines (one widget per page and per row, each with its own `.ui`), and
//! every widget's template next to its code.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut all = Vec::new();
    files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
    all.sort();
    all
}

#[test]
fn no_source_file_is_over_500_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).ok()?.lines().count();
            (n > 500).then(|| format!("{}: {n} lines", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn every_template_is_used_and_marks_its_strings_for_translation() {
    let all = sources();
    let code: String = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    for ui in all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ui"))
    {
        let name = ui.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            code.contains(&format!("\"{name}\"")),
            "{name} is used by no widget"
        );
        let text = std::fs::read_to_string(ui).unwrap_or_default();
        assert!(
            text.contains("domain=\"switchboard\""),
            "{name}: <interface domain=\"switchboard\"> so its strings are translated"
        );
        for line in text.lines() {
            let visible = [
                "name=\"label\"",
                "name=\"title\"",
                "name=\"description\"",
                "name=\"tooltip-text\"",
                "name=\"placeholder-text\"",
                "name=\"subtitle\"",
            ];
            if visible.iter().any(|v| line.contains(v))
                && line.contains("<property")
                && !line.contains("translatable=\"yes\"")
                && !line.contains(">Switchboard<")
            {
                panic!(
                    "{name}: a visible string not marked translatable: {}",
                    line.trim()
                );
            }
        }
    }
}
