//! What a trained model is for, beyond reconstructing: generating digits (`generate`): samples from a
//! variational model's prior, interpolations between test digits' codes, and the manifold of a 2-D latent,
//! each drawn as a labelled picture; the PCA baseline of the linear autoencoder (`pca`, on `linalg`); and
//! ranking metrics for retrieval by code (`retrieval`).

pub mod classify;
pub mod complete;
pub mod generate;
pub mod linalg;
pub mod pca;
pub mod pictures;
pub mod retrieval;
pub mod retrieve;
