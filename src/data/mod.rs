//! Data sets: IDX parsing and validation (`idx`), MNIST files and checksums (`mnist`).

pub mod idx;
pub mod mnist;

pub use idx::{DataError, IdxImages};
pub use mnist::{Dataset, Split};
