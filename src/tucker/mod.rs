//! Tucker-2 decomposition of convolution kernels, and the rules that choose
//! its ranks.
//!
//! Pure linear algebra on faer: no Burn, no I/O, no model. As in tensorly,
//! the decomposition ([`partial_tucker2`]) takes its ranks as given, and
//! choosing them is a separate question ([`ranks`], [`evbmf`]). Building
//! factorised layers from the result is the model's business
//! (`model::factorised`), and compressing a whole network is `compress`'s.

pub mod evbmf;
pub mod hooi;
pub mod ranks;

pub use hooi::{partial_tucker2, HooiOptions, Tucker2, TuckerError};
