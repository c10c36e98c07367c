//! Translations: user-visible strings go through [`tr`] (gettext, domain
//! `switchboard`); the `.ui` files mark theirs `translatable="yes"`.
//! `po/POTFILES.in` lists both; `scripts/update-pot` extracts them.

/// The gettext domain.
pub const DOMAIN: &str = "switchboard";

/// Binds the domain to the installed catalogues (`$SWITCHBOARD_LOCALEDIR`
/// or the system's), so that both the code's strings and GtkBuilder's
/// are translated. Without a catalogue everything stays English.
pub fn init() {
    use gettextrs::{
        LocaleCategory, bind_textdomain_codeset, bindtextdomain, setlocale, textdomain,
    };
    setlocale(LocaleCategory::LcAll, "");
    let dir = std::env::var("SWITCHBOARD_LOCALEDIR").unwrap_or_else(|_| "/usr/share/locale".into());
    let _ = bindtextdomain(DOMAIN, dir);
    let _ = bind_textdomain_codeset(DOMAIN, "UTF-8");
    let _ = textdomain(DOMAIN);
}

/// A user-visible string, translated. Placeholders such as `{name}` are
/// replaced by the caller after translation, so translators see them.
pub fn tr(msgid: &str) -> String {
    gettextrs::gettext(msgid)
}
