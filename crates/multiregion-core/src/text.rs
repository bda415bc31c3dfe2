//! Text a member cluster (or an endpoint) supplies, made safe to show: one
//! line, no credentials, and short. Every such string passes through
//! `member_text` before it reaches status, an Event or a log line, so a
//! member cannot make a status write fail by its size, split a log line,
//! or leak a URL's password.

/// The most characters of member-supplied text the operator keeps.
pub const MEMBER_TEXT_MAX: usize = 512;

/// `text` on one line (control characters become spaces, runs of blanks
/// one space), with the userinfo of any URL in it removed, cut at
/// [`MEMBER_TEXT_MAX`] characters with "…" marking the cut.
pub fn member_text(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<String> = one_line.split_whitespace().map(without_userinfo).collect();
    let joined = words.join(" ");
    match joined.char_indices().nth(MEMBER_TEXT_MAX) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// A word with the `user:password@` of a URL in it removed.
fn without_userinfo(word: &str) -> String {
    let Some(scheme_end) = word.find("://") else {
        return word.to_string();
    };
    let rest = &word[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &word[..scheme_end + 3], &rest[at + 1..]),
        None => word.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_text_is_one_short_line_without_credentials() {
        assert_eq!(member_text("ok"), "ok");
        assert_eq!(
            member_text("[+]ping ok\n[-]etcd failed\r\n\treason"),
            "[+]ping ok [-]etcd failed reason"
        );
        assert_eq!(
            member_text("Get \"https://admin:s3cret@10.0.0.1:6443/readyz\": EOF"),
            "Get \"https://10.0.0.1:6443/readyz\": EOF"
        );
        assert_eq!(
            member_text("see postgres://app:pw@db/x?a=b@c"),
            "see postgres://db/x?a=b@c"
        );
        let long = "é".repeat(2000);
        let cut = member_text(&long);
        assert_eq!(cut.chars().count(), MEMBER_TEXT_MAX + 1);
        assert!(cut.ends_with('…'));
    }
}
