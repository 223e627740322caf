// Counter-based randomness shared by the kernels that draw (noise.wgsl, vae.wgsl): a hash of (seed, stream,
// step, index, draw), no generator state, so every element of every step draws independently in any order.
// src/rng.rs computes the same bits on the host (WGSL u32 arithmetic wraps like `wrapping_mul`).

// lowbias32 / murmur3-style finaliser (wrapping u32 arithmetic).
fn mix32(x: u32) -> u32 {
    var h = x;
    h = h ^ (h >> 16u);
    h = h * 0x7feb352du;
    h = h ^ (h >> 15u);
    h = h * 0x846ca68bu;
    h = h ^ (h >> 16u);
    return h;
}

fn counter_hash(seed: u32, stream: u32, step: u32, index: u32, draw: u32) -> u32 {
    var h = mix32(seed ^ 0x9e3779b9u);
    h = mix32(h ^ stream);
    h = mix32(h ^ step);
    h = mix32(h ^ index);
    return mix32(h ^ draw);
}

// (k + ½)·2⁻²³ for the top 23 bits k: exact in f32, strictly inside (0, 1).
fn counter_uniform(seed: u32, stream: u32, step: u32, index: u32, draw: u32) -> f32 {
    return (f32(counter_hash(seed, stream, step, index, draw) >> 9u) + 0.5) * (1.0 / 8388608.0);
}

// A standard normal draw of element `index` (Box–Muller on draws 0 and 1; the shifted angle stays in
// (−π, π), where GPU cos is most accurate). src/backend/cpu/noise.rs `standard_normal` is the twin.
fn counter_normal(seed: u32, stream: u32, step: u32, index: u32) -> f32 {
    let u0 = counter_uniform(seed, stream, step, index, 0u);
    let u1 = counter_uniform(seed, stream, step, index, 1u);
    return sqrt(-2.0 * log(u0)) * cos(6.283185307179586 * (u1 - 0.5));
}
