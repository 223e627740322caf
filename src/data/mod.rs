//! Data sets: IDX parsing and validation (`idx`), MNIST files and checksums (`mnist`), and folders of
//! one's own PNG images, a sub-folder per class (`image_folder`).

pub mod idx;
pub mod image_folder;
pub mod mnist;

pub use idx::{DataError, IdxImages};
pub use mnist::{Dataset, Split};
