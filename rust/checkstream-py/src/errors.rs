//! Mapping of `checkstream_core::CoreError` to Python exceptions.
//!
//! All exceptions derive from `CoreError`, itself a `ValueError`, so callers can catch broadly
//! or precisely.

use checkstream_core::CoreError as RsError;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(
    checkstream._core,
    CoreError,
    PyValueError,
    "Base class of checkstream._core errors."
);
create_exception!(
    checkstream._core,
    PatternError,
    CoreError,
    "A phrase, pattern or sequence set is invalid."
);
create_exception!(
    checkstream._core,
    InputError,
    CoreError,
    "An argument or input is invalid (out-of-range offset or size, invalid UTF-8, ...)."
);
create_exception!(
    checkstream._core,
    StateError,
    CoreError,
    "The object is not in a state that allows this call."
);

pub fn to_py(err: RsError) -> PyErr {
    match err {
        RsError::InvalidPattern(msg) => PatternError::new_err(msg),
        RsError::InvalidArgument(msg) => InputError::new_err(msg),
        RsError::InvalidState(msg) => StateError::new_err(msg),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CoreError", py.get_type::<CoreError>())?;
    m.add("PatternError", py.get_type::<PatternError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("StateError", py.get_type::<StateError>())?;
    Ok(())
}
