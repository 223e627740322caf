// The geometry uniform of conv2d.wgsl and conv_gemm.wgsl: ConvGeom in src/ops.rs, the accumulate flag, for
// the split weight gradient the batch·positions terms each partial sum covers, and for the *_bias_act
// entry points the activation code (activation_math.wgsl).

struct ConvParams {
    batch: u32,
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_c: u32,
    out_h: u32,
    out_w: u32,
    k_h: u32,
    k_w: u32,
    stride: u32,
    pad: u32,
    accumulate: u32,
    chunk: u32,
    act: u32,
    _pad1: u32,
    _pad2: u32,
}
