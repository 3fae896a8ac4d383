//! The reference platform's registry (`registry.db` in the platform directory), read-only.

use std::collections::HashMap;

use super::{Identity, RegistryError, SiteRecord, SiteRegistry};
use crate::platform::Platform;

pub struct Reference {
    dir: String,
    platform: Platform,
}

impl Reference {
    pub fn open(dir: &str) -> Result<Reference, RegistryError> {
        let platform = Platform::open(dir).map_err(|source| RegistryError::Reference {
            registry: dir.to_owned(),
            source,
        })?;
        Ok(Reference {
            dir: dir.to_owned(),
            platform,
        })
    }

    fn err(&self, source: crate::platform::PlatformError) -> RegistryError {
        RegistryError::Reference {
            registry: self.dir.clone(),
            source,
        }
    }
}

impl SiteRegistry for Reference {
    fn describe(&self) -> String {
        self.dir.clone()
    }

    fn sites(&self, ids: &[&str]) -> Result<HashMap<String, SiteRecord>, RegistryError> {
        let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
        Ok(self
            .platform
            .sites()
            .map_err(|e| self.err(e))?
            .into_iter()
            .filter(|s| wanted.contains(s.id.as_str()))
            .map(|s| (s.id.clone(), s))
            .collect())
    }

    fn identify(&self, id: &str) -> Result<Identity, RegistryError> {
        self.platform.identify(id).map_err(|e| self.err(e))
    }

    fn identity(&self) -> Result<String, RegistryError> {
        use std::os::unix::fs::MetadataExt;
        let db = std::path::Path::new(&self.dir).join(crate::platform::REGISTRY);
        let meta = std::fs::metadata(&db).map_err(|e| {
            self.err(crate::platform::PlatformError::Io {
                path: db.clone(),
                source: e,
            })
        })?;
        // The file itself, however reached (another path, a symlink, a hard link).
        Ok(format!(
            "registry.db device {} inode {}",
            meta.dev(),
            meta.ino()
        ))
    }

    fn held(&self, ids: &[&str]) -> Result<HashMap<String, super::Claim>, RegistryError> {
        let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
        Ok(self
            .platform
            .claims()
            .map_err(|e| self.err(e))?
            .into_iter()
            .filter(|(site, c)| wanted.contains(site.as_str()) && !super::is_void(c))
            .collect())
    }
}

/// Claims in the reference platform's registry (`platform::claims`).
impl super::SiteClaims for Reference {
    fn claim(
        &self,
        sites: &[&str],
        me: &super::Claim,
        take_over: bool,
    ) -> Result<Vec<(String, super::Claim)>, super::ClaimError> {
        self.platform
            .claim_sites(sites, me, take_over, super::is_void)
            .map_err(|e| match e {
                crate::platform::PlatformError::Claimed { held } => super::ClaimError::Held(held),
                e => self.claims_failed(e),
            })
    }

    fn release(&self, run_id: &str) -> Result<(), super::ClaimError> {
        self.platform
            .release_sites(run_id)
            .map(drop)
            .map_err(|e| self.claims_failed(e))
    }
}

impl Reference {
    fn claims_failed(&self, e: crate::platform::PlatformError) -> super::ClaimError {
        super::ClaimError::Registry {
            registry: self.dir.clone(),
            reason: e.to_string(),
        }
    }
}
