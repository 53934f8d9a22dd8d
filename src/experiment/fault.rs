//! Test-only fault injection. Compiled in only with the `faults` cargo feature (`make
//! test-faults`); then `NICSTORM_FAULT=panic@PHASE` makes the cell panic as it enters PHASE,
//! so the fault suite can show what a bug inside a phase leaves behind. Without the feature
//! `hook` is empty and the variable is ignored.

use crate::model::phase::Phase;

#[cfg(feature = "faults")]
pub(crate) fn hook(phase: Phase) {
    if let Ok(spec) = std::env::var("NICSTORM_FAULT") {
        if spec == format!("panic@{phase}") {
            panic!("injected fault (NICSTORM_FAULT={spec})");
        }
    }
}

#[cfg(not(feature = "faults"))]
#[inline(always)]
pub(crate) fn hook(_phase: Phase) {}
