//! Secrets by reference, resolved only when a step runs: a param value may name an
//! environment variable (`{env:HOOK_TOKEN}` anywhere in it) instead of holding a credential. The plan, the ledger and every output keep
//! the reference; the resolved value lives only in the step's memory, and [`Resolved::hide`]
//! puts the reference back into any text (an error, a response) that quotes it.

use super::StepError;
use crate::workflow::params::secret_refs;

/// Resolved secrets of one step, to hide again in what the step reports.
#[derive(Default)]
pub(crate) struct Resolved {
    values: Vec<(String, String)>,
}

impl Resolved {
    /// `value` with its references replaced by the environment's values; a missing variable
    /// is a permanent failure naming it.
    pub(crate) fn resolve(&mut self, value: &str) -> Result<String, StepError> {
        let names = secret_refs(value);
        if names.is_empty() {
            return Ok(value.to_owned());
        }
        let mut out = value.to_owned();
        for name in names {
            let secret = std::env::var(name).map_err(|_| {
                StepError::Permanent(format!(
                    "the secret {{env:{name}}} is not set: export {name} in drover's environment"
                ))
            })?;
            out = out.replace(&format!("{{env:{name}}}"), &secret);
            if !secret.is_empty() {
                self.values.push((name.to_owned(), secret));
            }
        }
        Ok(out)
    }

    /// `text` with every resolved secret replaced by its reference again.
    pub(crate) fn hide(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (name, secret) in &self.values {
            out = out.replace(secret.as_str(), &format!("{{env:{name}}}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_hide_again() {
        // PATH is set in every environment drover's tests run in (setting a variable needs
        // `unsafe` in this edition, which the crate forbids).
        let path = std::env::var("PATH").unwrap();
        let mut r = Resolved::default();
        assert_eq!(
            r.resolve("Bearer {env:PATH}").unwrap(),
            format!("Bearer {path}")
        );
        assert_eq!(r.resolve("{env:PATH}").unwrap(), path);
        assert_eq!(r.resolve("plain").unwrap(), "plain");
        assert_eq!(
            r.hide(&format!("401: bad token {path}")),
            "401: bad token {env:PATH}"
        );
        let err = r.resolve("{env:DROVER_TEST_SECRET_UNSET}").unwrap_err();
        assert!(
            err.to_string().contains("export DROVER_TEST_SECRET_UNSET"),
            "{err}"
        );
    }
}
