//! `checkstream._core`: thin pyo3 bindings over `checkstream-core`.
//!
//! Each submodule of this crate wraps one core component and registers its classes here.
//! Core errors map to Python exceptions in `errors`; no policy decision is made in this crate.

use pyo3::prelude::*;

mod errors;
mod holdback;
mod masker;
mod matcher;
mod normalize;
mod text_delta;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    normalize::register(m)?;
    matcher::register(m)?;
    holdback::register(m)?;
    masker::register(m)?;
    text_delta::register(m)?;
    Ok(())
}
