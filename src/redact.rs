//! Credentials out of everything drover records or prints. Errors from HTTP steps and webhooks
//! quote URLs and responses, and a URL may carry a password (`https://user:pw@host`), a token
//! in its query (`?token=…`, a presigned `X-Amz-Signature=…`), or a header may be quoted whole
//! (`Authorization: Bearer …`). [`text`] replaces each such value with `***` before an error is
//! written to the ledger, shown in an event, or put in a plan document.
//!
//! Better than redacting is never holding the secret: workflows reference one by name
//! (`{env:HOOK_TOKEN}`, see `steps::secret`), and only the reference is ever stored.

/// Query parameters and `key=value` pairs whose value is a credential (compared case-blind;
/// a name containing one of these also counts, e.g. `api_key`, `X-Amz-Signature`).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "key",
    "signature",
    "sig",
    "credential",
    "auth",
    "session",
];

/// Headers whose value is a credential.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// `text` with every credential it visibly carries replaced by `***`.
pub fn text(text: &str) -> String {
    let out = userinfo(text);
    let out = headers(&out);
    pairs(&out)
}

/// Whether `text` carries a credential that [`text`] would hide (used to warn at plan time
/// about literal credentials in a workflow).
pub fn has_credentials(value: &str) -> bool {
    text(value) != value
}

/// `scheme://user:password@host` → `scheme://***@host` (a user name alone is kept).
fn userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) if authority[..at].contains(':') => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `Authorization: Bearer abc` → `Authorization: ***` (to the end of the line).
fn headers(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            for header in SECRET_HEADERS {
                let Some(at) = lower.find(&format!("{header}:")) else {
                    continue;
                };
                let before_ok = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
                if before_ok {
                    let value_start = at + header.len() + 1;
                    let end = line.trim_end_matches(['\n', '\r']).len();
                    return format!("{} ***{}", &line[..value_start], &line[end..]);
                }
            }
            line.to_owned()
        })
        .collect()
}

/// `token=abc`, `api_key=abc` in queries and messages → `token=***`.
fn pairs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (head, tail) = rest.split_at(eq);
        // Where the name before `=` starts: after the last character that cannot be part of one
        // (by its full width: the text may be any UTF-8).
        let name_start = head
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let name = head[name_start..].to_ascii_lowercase();
        out.push_str(head);
        out.push('=');
        let tail = &tail[1..];
        let value_end = tail
            .find(|c: char| matches!(c, '&' | '#' | '"' | '\'' | ',' | ';') || c.is_whitespace())
            .unwrap_or(tail.len());
        if !name.is_empty() && value_end > 0 && SECRET_KEYS.iter().any(|k| name.contains(k)) {
            out.push_str("***");
        } else {
            out.push_str(&tail[..value_end]);
        }
        rest = &tail[value_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(text(input), expected, "{input}");
    }

    #[test]
    fn passwords_in_urls_are_hidden() {
        check(
            "POST https://user:hunter2@hooks.example/h: HTTP 403",
            "POST https://***@hooks.example/h: HTTP 403",
        );
        check("https://user@host/x", "https://user@host/x");
        check(
            "postgres://u:p@db:5432/x and s3://b/k",
            "postgres://***@db:5432/x and s3://b/k",
        );
    }

    #[test]
    fn tokens_in_queries_and_pairs_are_hidden() {
        check(
            "GET https://h/x?X-Amz-Signature=abcd&X-Amz-Expires=60&api_key=zz",
            "GET https://h/x?X-Amz-Signature=***&X-Amz-Expires=60&api_key=***",
        );
        check(
            "token=abc password=p1 user=bob",
            "token=*** password=*** user=bob",
        );
        check("a == b, x=1", "a == b, x=1");
        // Any UTF-8 around an `=` (a webhook's answer, a command's output).
        check(
            "Größe=0 naïve=1 é=2 passé_token=x",
            "Größe=0 naïve=1 é=2 passé_token=***",
        );
    }

    #[test]
    fn credential_headers_are_hidden() {
        check(
            "sent Authorization: Bearer abc.def\nnext line",
            "sent Authorization: ***\nnext line",
        );
        check("X-Api-Key: k123", "X-Api-Key: ***");
        assert!(has_credentials("https://a:b@c/"));
        assert!(!has_credentials("https://c/{env:HOOK}"));
    }
}
