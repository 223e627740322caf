// Activations and their slopes, shared by activation.wgsl and loss.wgsl (prepended to both sources).
// Codes: 0 identity, 1 ReLU, 2 leaky ReLU (slope 0.01), 3 sigmoid, 4 tanh. Each slope is written through
// the output y = act(x), so forward may overwrite x.

fn activate(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return max(x, 0.0); }
        case 2u: { return select(x * 0.01, x, x > 0.0); }
        case 3u: { return 1.0 / (1.0 + exp(-x)); }
        // tanh saturates to ±1 in f32 beyond |x| = 10; clamping keeps exp-based implementations finite.
        case 4u: { return tanh(clamp(x, -15.0, 15.0)); }
        default: { return x; }
    }
}

fn activation_slope(y: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return select(0.0, 1.0, y > 0.0); }
        case 2u: { return select(0.01, 1.0, y > 0.0); }
        case 3u: { return y * (1.0 - y); }
        case 4u: { return 1.0 - y * y; }
        default: { return 1.0; }
    }
}

// d(slope)/dy through the output: 1 − 2y for the sigmoid, −2y for tanh, 0 for the piecewise-linear ones.
// The contractive penalty's gradient needs it (∂ act'(h)² / ∂h = 2·act'(h)·slope_derivative(h)).
fn activation_slope_derivative(y: f32, act: u32) -> f32 {
    switch act {
        case 3u: { return 1.0 - 2.0 * y; }
        case 4u: { return -2.0 * y; }
        default: { return 0.0; }
    }
}
