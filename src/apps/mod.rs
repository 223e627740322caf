//! What a trained model is for, beyond reconstructing: today, generating digits (`generate`): samples
//! from a variational model's prior, interpolations between test digits' codes, and the manifold of a 2-D
//! latent, each drawn as a labelled picture.

pub mod generate;
pub mod pictures;
