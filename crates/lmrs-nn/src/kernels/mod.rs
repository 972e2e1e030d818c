//! Hand-written CPU kernels for hot paths where the generic backend is slow. Each one sits
//! behind an ordinary layer type next to the plain backend path and is tested against it.

pub mod attention_decode;
pub mod block_quant;
pub mod encoder_attention;
pub mod gelu;
pub mod gemm;
pub mod k_quant;
pub mod layer_norm;
pub mod small_matmul;
pub mod vmath;
