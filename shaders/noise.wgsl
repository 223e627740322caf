// Input corruption for denoising autoencoders, with counter-based randomness: element i of global step
// state[0] draws from a hash of (seed, stream, step, i, draw), so no generator state is kept and the CPU twin
// (src/backend/cpu/noise.rs, hash in src/rng.rs) draws the same bits. counter_uniform comes from
// counter_rng.wgsl, prepended.
//
// kind 0, Gaussian:   z = √(−2 ln u₀)·cos(2π(u₁ − ½)) (Box–Muller), y = clamp(x + σz, 0, 1)
// kind 1, Mask:       y = 0 if u₀ < ν else x
// kind 2, SaltPepper: if u₀ < p: y = 0 when u₁ < ½, else 1; otherwise y = x
// kind 3, Square:     y = 0 inside a size × size square of each sample (size = amount), placed at
//                     top = ⌊u₂·(h − size + 1)⌋, left = ⌊u₃·(w − size + 1)⌋ with the sample's draws 2 and 3
//                     (keyed by the sample's index, not the element's); otherwise y = x

struct CorruptParams {
    len: u32,
    kind: u32,
    amount: f32,
    seed: u32,
    stream: u32,
    // One sample's height and width, for square occlusion.
    height: u32,
    width: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> cp: CorruptParams;
@group(0) @binding(1) var<storage, read> corrupt_x: array<corrupt_x_t>;
@group(0) @binding(2) var<storage, read_write> corrupt_y: array<corrupt_y_t>;
@group(0) @binding(3) var<storage, read> corrupt_state: array<u32>;

// Where square occlusion of side `size` puts its corner along an extent: ⌊u·(extent − size + 1)⌋.
fn square_corner(sample: u32, draw: u32, extent: u32, size: u32) -> u32 {
    let room = extent - min(size, extent) + 1u;
    let u = counter_uniform(cp.seed, cp.stream, corrupt_state[0], sample, draw);
    return min(u32(u * f32(room)), room - 1u);
}

// Whether square occlusion hides element i.
fn occluded(i: u32) -> bool {
    let size = u32(cp.amount);
    let plane = cp.height * cp.width;
    let sample = i / plane;
    let row = (i % plane) / cp.width;
    let col = i % cp.width;
    let top = square_corner(sample, 2u, cp.height, size);
    let left = square_corner(sample, 3u, cp.width, size);
    return row >= top && row < top + size && col >= left && col < left + size;
}

// (y, 1 if the noise chose this element else 0) for element i; Gaussian noise chooses every element.
fn corrupt_element(i: u32) -> vec2<f32> {
    let step = corrupt_state[0];
    let x = f32(corrupt_x[i]);
    if (cp.kind == 3u) {
        if (occluded(i)) {
            return vec2<f32>(0.0, 1.0);
        }
        return vec2<f32>(x, 0.0);
    }
    let u0 = counter_uniform(cp.seed, cp.stream, step, i, 0u);
    let u1 = counter_uniform(cp.seed, cp.stream, step, i, 1u);
    var y = x;
    var chosen = 1.0;
    if (cp.kind == 0u) {
        y = clamp(x + cp.amount * counter_normal(cp.seed, cp.stream, step, i), 0.0, 1.0);
    } else if (u0 < cp.amount) {
        if (cp.kind == 1u) {
            y = 0.0;
        } else {
            y = select(1.0, 0.0, u1 < 0.5);
        }
    } else {
        chosen = 0.0;
    }
    return vec2<f32>(y, chosen);
}

@compute @workgroup_size(256)
fn corrupt(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= cp.len) {
        return;
    }
    corrupt_y[i] = to_corrupt_y_t(corrupt_element(i).x);
}

// corrupt, and mask[i] = 1 where the element was chosen (the emphasised loss weights those).
@group(0) @binding(4) var<storage, read_write> corrupt_mask: array<corrupt_mask_t>;

@compute @workgroup_size(256)
fn corrupt_masked(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= cp.len) {
        return;
    }
    let r = corrupt_element(i);
    corrupt_y[i] = to_corrupt_y_t(r.x);
    corrupt_mask[i] = to_corrupt_mask_t(r.y);
}
