//! Outbound HTTP shared by the jobs that call out (providers, `extract_content`,
//! `http`): what an answer or a transport error means for the job ([`classify`]), and
//! the SSRF guard that keeps a job from reaching internal addresses ([`guard`]).

pub mod classify;
pub mod guard;
