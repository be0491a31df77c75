//! The lease a remote worker holds, as it travels: `"<attempt>:<worker_id>"`. Opaque to
//! workers; here it is the store's fencing token (job id, attempt, owner).

use kyu_actors::JobLease;
use uuid::Uuid;

use crate::api::error::ApiError;

pub fn format_lease(attempt: u32, worker: &str) -> String {
    format!("{attempt}:{worker}")
}

/// The lease `text` names for job `id`; `field` is the request field it came in.
pub fn parse_lease(id: Uuid, text: &str, field: &str) -> Result<JobLease, ApiError> {
    let bad = || ApiError::invalid(field, "not a lease kyu handed out (send it back verbatim)");
    let (attempt, owner) = text.split_once(':').ok_or_else(bad)?;
    if attempt.is_empty() || attempt.len() > 9 {
        return Err(bad());
    }
    let attempt: u32 = attempt.parse().map_err(|_| bad())?;
    if owner.is_empty() || owner.chars().count() > 255 || owner.contains('\0') {
        return Err(bad());
    }
    Ok(JobLease {
        id,
        attempt,
        owner: owner.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let id = Uuid::now_v7();
        let l = parse_lease(id, &format_lease(3, "host:1:abc"), "lease").unwrap();
        assert_eq!((l.attempt, l.owner.as_str()), (3, "host:1:abc"));
        for bad in ["", "3", ":w", "x:w", "3:", "-1:w"] {
            assert!(parse_lease(id, bad, "lease").is_err(), "{bad}");
        }
    }
}
