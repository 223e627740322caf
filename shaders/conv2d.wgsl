// 2-D convolution, NCHW, weights [out_c, in_c, k_h, k_w] (PyTorch's layouts), stride s, zero padding p:
//
// conv2d:                 y[n, o, i, j]  = Σ_{c, a, b} x[n, c, i·s − p + a, j·s − p + b] · w[o, c, a, b]
// conv2d_backward_data:   dx[n, c, h, v] = Σ over (o, a, b) with h = i·s − p + a, v = j·s − p + b
//                                          of dy[n, o, i, j] · w[o, c, a, b]
// conv2d_backward_weight: dw[o, c, a, b] = Σ_{n, i, j} dy[n, o, i, j] · x[n, c, i·s − p + a, j·s − p + b]
//
// The data gradient is also the forward of a transposed convolution (see ConvGeom in src/ops.rs).
// The first two run one thread per output element and gather, so no two threads write the same address
// (WGSL has no float atomics); conv_gemm.wgsl has implicit-GEMM forms of them that src/backend/gpu/conv.rs
// uses when there are enough channels to fill its tiles. conv_params.wgsl (ConvParams) is prepended. The weight gradient runs one workgroup per weight element: 256 threads stride
// over the batch·positions terms, then a tree reduction in workgroup memory; the order is fixed, so results
// are the same run after run.

@group(0) @binding(0) var<uniform> fwd: ConvParams;
@group(0) @binding(1) var<storage, read> fwd_x: array<fwd_x_t>;
@group(0) @binding(2) var<storage, read> fwd_w: array<fwd_w_t>;
@group(0) @binding(3) var<storage, read_write> fwd_y: array<fwd_y_t>;

@compute @workgroup_size(256)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let g = fwd;
    let idx = gid.y * groups.x * 256u + gid.x;
    if (idx >= g.batch * g.out_c * g.out_h * g.out_w) {
        return;
    }
    let j = idx % g.out_w;
    let i = (idx / g.out_w) % g.out_h;
    let o = (idx / (g.out_w * g.out_h)) % g.out_c;
    let n = idx / (g.out_w * g.out_h * g.out_c);
    // Input coordinates of tap (0, 0); signed, since the padding reaches below zero.
    let h0 = i32(i * g.stride) - i32(g.pad);
    let v0 = i32(j * g.stride) - i32(g.pad);
    var sum = 0.0;
    for (var c = 0u; c < g.in_c; c = c + 1u) {
        let x_plane = (n * g.in_c + c) * g.in_h * g.in_w;
        let w_plane = (o * g.in_c + c) * g.k_h * g.k_w;
        for (var a = 0u; a < g.k_h; a = a + 1u) {
            let h = h0 + i32(a);
            if (h < 0 || h >= i32(g.in_h)) {
                continue;
            }
            for (var b = 0u; b < g.k_w; b = b + 1u) {
                let v = v0 + i32(b);
                if (v < 0 || v >= i32(g.in_w)) {
                    continue;
                }
                sum = fma(f32(fwd_x[x_plane + u32(h) * g.in_w + u32(v)]), f32(fwd_w[w_plane + a * g.k_w + b]), sum);
            }
        }
    }
    fwd_y[idx] = to_fwd_y_t(sum);
}

@group(0) @binding(4) var<uniform> bwd_data: ConvParams;
@group(0) @binding(5) var<storage, read> bwd_data_dy: array<bwd_data_dy_t>;
@group(0) @binding(6) var<storage, read> bwd_data_w: array<bwd_data_w_t>;
@group(0) @binding(7) var<storage, read_write> bwd_data_dx: array<bwd_data_dx_t>;

// Input pixel (h, v) is touched by tap (a, b) of output (i, j) when i·s = h + p − a, j·s = v + p − b.
@compute @workgroup_size(256)
fn conv2d_backward_data(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let g = bwd_data;
    let idx = gid.y * groups.x * 256u + gid.x;
    if (idx >= g.batch * g.in_c * g.in_h * g.in_w) {
        return;
    }
    let v = idx % g.in_w;
    let h = (idx / g.in_w) % g.in_h;
    let c = (idx / (g.in_w * g.in_h)) % g.in_c;
    let n = idx / (g.in_w * g.in_h * g.in_c);
    let s = i32(g.stride);
    var sum = 0.0;
    for (var a = 0u; a < g.k_h; a = a + 1u) {
        let ti = i32(h + g.pad) - i32(a);
        if (ti < 0 || ti % s != 0 || ti / s >= i32(g.out_h)) {
            continue;
        }
        let i = u32(ti / s);
        for (var b = 0u; b < g.k_w; b = b + 1u) {
            let tj = i32(v + g.pad) - i32(b);
            if (tj < 0 || tj % s != 0 || tj / s >= i32(g.out_w)) {
                continue;
            }
            let j = u32(tj / s);
            for (var o = 0u; o < g.out_c; o = o + 1u) {
                let dy = f32(bwd_data_dy[((n * g.out_c + o) * g.out_h + i) * g.out_w + j]);
                sum = fma(dy, f32(bwd_data_w[((o * g.in_c + c) * g.k_h + a) * g.k_w + b]), sum);
            }
        }
    }
    if (g.accumulate != 0u) {
        sum = sum + f32(bwd_data_dx[idx]);
    }
    bwd_data_dx[idx] = to_bwd_data_dx_t(sum);
}

@group(0) @binding(8) var<uniform> bwd_weight: ConvParams;
@group(0) @binding(9) var<storage, read> bwd_weight_dy: array<bwd_weight_dy_t>;
@group(0) @binding(10) var<storage, read> bwd_weight_x: array<bwd_weight_x_t>;
@group(0) @binding(11) var<storage, read_write> bwd_weight_dw: array<f32>;

var<workgroup> partial: array<f32, 256>;

// Workgroup (wid.y · groups.x + wid.x) computes weight element e = ((o·in_c + c)·k_h + a)·k_w + b.
@compute @workgroup_size(256)
fn conv2d_backward_weight(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = bwd_weight;
    let e = wid.y * groups.x + wid.x;
    // Every thread of the group takes the same branch, so the barriers below stay uniform.
    let in_range = e < g.out_c * g.in_c * g.k_h * g.k_w;
    let b = e % g.k_w;
    let a = (e / g.k_w) % g.k_h;
    let c = (e / (g.k_w * g.k_h)) % g.in_c;
    let o = e / (g.k_w * g.k_h * g.in_c);
    let positions = g.out_h * g.out_w;
    var sum = 0.0;
    if (in_range) {
        for (var t = lid; t < g.batch * positions; t = t + 256u) {
            let n = t / positions;
            let i = (t % positions) / g.out_w;
            let j = t % g.out_w;
            let h = i32(i * g.stride + a) - i32(g.pad);
            let v = i32(j * g.stride + b) - i32(g.pad);
            if (h >= 0 && h < i32(g.in_h) && v >= 0 && v < i32(g.in_w)) {
                let x = f32(bwd_weight_x[((n * g.in_c + c) * g.in_h + u32(h)) * g.in_w + u32(v)]);
                sum = fma(f32(bwd_weight_dy[(n * g.out_c + o) * positions + t % positions]), x, sum);
            }
        }
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (in_range && lid == 0u) {
        var total = partial[0];
        if (g.accumulate != 0u) {
            total = total + bwd_weight_dw[e];
        }
        bwd_weight_dw[e] = total;
    }
}
