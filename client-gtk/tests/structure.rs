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

/// A button that shows only an icon has an accessible name (a screen
/// reader, and the GUI tests, find it by that name).
#[test]
fn every_icon_button_has_an_accessible_name() {
    for ui in sources()
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ui"))
    {
        let text = std::fs::read_to_string(ui).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.contains("name=\"icon-name\"") {
                continue;
            }
            let owner = lines[..i]
                .iter()
                .rev()
                .find(|l| l.contains("<object class="))
                .copied()
                .unwrap_or_default();
            if !(owner.contains("\"GtkButton\"") || owner.contains("\"GtkMenuButton\"")) {
                continue;
            }
            let block: String = lines[i..(i + 8).min(lines.len())].concat();
            let named = block.contains("<accessibility>") || block.contains("name=\"label\"");
            // Rows made in code give their buttons names there.
            let in_code = ui.ends_with("member_row.ui");
            assert!(
                named || in_code,
                "{}:{}: an icon button without an accessible name",
                ui.display(),
                i + 1
            );
        }
    }
}

/// Every file with user-visible strings is listed for translators.
#[test]
fn the_translation_template_lists_every_file_with_strings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = std::fs::read_to_string(root.join("po/POTFILES.in"))
        .unwrap_or_else(|e| panic!("po/POTFILES.in: {e}"));
    for p in sources() {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let has_strings = text.contains("translatable=\"yes\"") || text.contains("tr(\"");
        let rel = p
            .strip_prefix(root)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        if has_strings && !rel.ends_with("i18n.rs") {
            assert!(
                listed.lines().any(|l| l.trim() == rel),
                "{rel} has strings for translators but is not in po/POTFILES.in"
            );
        }
    }
}
