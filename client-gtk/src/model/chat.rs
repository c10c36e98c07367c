//! A chat line as the room keeps it.

/// One chat line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    pub id: u64,
    pub ts_ms: u64,
    pub from: String,
    pub text: String,
    /// Private: to `to` (or to us).
    pub private: bool,
    pub to: Option<String>,
    /// From an operator (the admin API), not a member.
    pub operator: bool,
}

impl ChatLine {
    /// How the line reads in the chat panel.
    pub fn display(&self, me: &str) -> String {
        // No member may go by a name like the operator's: this line cannot
        // be faked by one.
        if self.operator {
            let who = crate::i18n::tr("Operator");
            return if self.private {
                format!("({}) {who}: {}", crate::i18n::tr("private"), self.text)
            } else {
                format!("{who}: {}", self.text)
            };
        }
        if self.private {
            let to = self.to.as_deref().unwrap_or(me);
            if self.from == me {
                format!("(private to {to}) {}", self.text)
            } else {
                format!("(private) {}: {}", self.from, self.text)
            }
        } else {
            format!("{}: {}", self.from, self.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_line_reads_as_the_operators_whatever_its_from() {
        let line = |from: &str, operator: bool, private: bool| ChatLine {
            id: 5,
            ts_ms: 2000,
            from: from.into(),
            text: "closing at six".into(),
            private,
            to: None,
            operator,
        };
        assert_eq!(
            line("server", true, false).display("ann"),
            "Operator: closing at six"
        );
        assert_eq!(
            line("server", true, true).display("ann"),
            "(private) Operator: closing at six"
        );
        assert_eq!(
            line("bob", false, false).display("ann"),
            "bob: closing at six"
        );
    }
}
