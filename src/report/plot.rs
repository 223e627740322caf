//! loss.png: a run's train and test loss per epoch, read back from metrics.csv, so a resumed run draws its
//! whole history.
//!
//! One panel per quantity, each with its own y axis: the objective's total first, then every term and
//! statistic the run reports (a penalty a thousand times smaller than the reconstruction would be a flat
//! line on a shared axis). Train is a solid blue line, test a dashed orange one, with a marker on every
//! epoch so a one-epoch run still shows its two points. A run that pretrains draws its phases one after
//! the other on the x axis, each named, with a dotted line where the next begins; a curve never joins two
//! phases.
//!
//! Drawn with `plotters` into an RGB buffer (no system library, no file of its own); its text is DejaVu
//! Sans, embedded from `assets/fonts` (Bitstream Vera licence, `assets/fonts/LICENSE-DejaVu.txt`), so
//! nothing is looked up on the machine at run time.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::RgbImage;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use super::ReportError;
use super::metrics::MetricsTable;
use super::png::save_rgb;

/// The file a run writes its loss curves to.
pub const LOSS_FILE: &str = "loss.png";

static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The name the embedded font is registered under in plotters' font table.
const FAMILY: &str = "sans-serif";

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const TEST: RGBColor = RGBColor(255, 127, 14);
const SEPARATOR: RGBColor = RGBColor(150, 150, 150);

/// Pixels of one panel, of the title strip above them all, and panels a line.
const PANEL: (u32, u32) = (560, 340);
const TITLE_HEIGHT: u32 = 64;
const COLUMNS: usize = 2;

/// One quantity's curves: its train and test value on every line of metrics.csv (`None` where the line
/// has none: a meter of another phase).
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub name: String,
    pub train: Vec<Option<f64>>,
    pub test: Vec<Option<f64>>,
}

/// What loss.png shows.
#[derive(Clone, Debug, PartialEq)]
pub struct LossPlot {
    pub title: String,
    /// A smaller line under the title (the objective), empty for none.
    pub subtitle: String,
    pub panels: Vec<Panel>,
    /// Every line's phase (all `None` in a run without pretraining).
    pub phases: Vec<Option<String>>,
}

impl LossPlot {
    /// The panels of `table`: `loss` from `train_loss`/`test_loss`, then one per `train_X`/`test_X`
    /// pair, leaving out a meter equal to the loss on every line (the reconstruction of a run with no
    /// other term is its loss).
    pub fn from_metrics(table: &MetricsTable, title: &str, subtitle: &str) -> LossPlot {
        let pair = |name: &str| -> Option<Panel> {
            Some(Panel {
                name: name.to_string(),
                train: table.column(&format!("train_{name}"))?,
                test: table.column(&format!("test_{name}"))?,
            })
        };
        let mut panels: Vec<Panel> = pair("loss").into_iter().collect();
        for column in &table.header {
            let Some(name) = column.strip_prefix("train_") else {
                continue;
            };
            if name == "loss" {
                continue;
            }
            if let Some(panel) = pair(name)
                && !panels.first().is_some_and(|loss| same_values(loss, &panel))
            {
                panels.push(panel);
            }
        }
        LossPlot {
            title: title.to_string(),
            subtitle: subtitle.to_string(),
            panels,
            phases: table.phases(),
        }
    }

    /// Lines of metrics.csv (epochs, all phases together).
    fn lines(&self) -> usize {
        self.phases.len()
    }
}

fn same_values(a: &Panel, b: &Panel) -> bool {
    let close = |x: &Option<f64>, y: &Option<f64>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        (None, None) => true,
        _ => false,
    };
    a.train.iter().zip(&b.train).all(|(x, y)| close(x, y))
        && a.test.iter().zip(&b.test).all(|(x, y)| close(x, y))
}

/// Reads `DIR/metrics.csv` and writes `DIR/loss.png` (atomically) under `title` and `subtitle`; returns
/// its path.
pub fn write_loss_plot(dir: &Path, title: &str, subtitle: &str) -> Result<PathBuf, ReportError> {
    let table = MetricsTable::read(&dir.join(super::metrics::FILE))?;
    let path = dir.join(LOSS_FILE);
    let picture = draw(&LossPlot::from_metrics(&table, title, subtitle)).map_err(|problem| {
        ReportError::Layout {
            path: path.clone(),
            problem,
        }
    })?;
    save_rgb(&path, &picture)?;
    Ok(path)
}

/// Registers the embedded font once per process; `false` if plotters refused it (a broken build).
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT_BYTES).is_ok())
}

/// Draws `plot`: the title strip, then the panels two a line. An error says what plotters could not
/// draw.
pub fn draw(plot: &LossPlot) -> Result<RgbImage, String> {
    if plot.panels.is_empty() {
        return Err("metrics.csv has no train_loss,test_loss columns".into());
    }
    let columns = COLUMNS.min(plot.panels.len());
    let rows = plot.panels.len().div_ceil(columns);
    let (width, height) = (
        PANEL.0 * columns as u32,
        TITLE_HEIGHT + PANEL.1 * rows as u32,
    );
    canvas((width, height), &plot.title, 22, |top, body| {
        let subtitle_style = TextStyle::from((FAMILY, 14).into_font())
            .color(&RGBColor(60, 60, 60))
            .pos(Pos::new(HPos::Center, VPos::Center));
        top.draw_text(&plot.subtitle, &subtitle_style, (width as i32 / 2, 48))
            .map_err(failed)?;
        draw_legend(top, width as i32 - 190, 22).map_err(failed)?;
        let cells = body.split_evenly((rows, columns));
        for (panel, cell) in plot.panels.iter().zip(&cells) {
            draw_panel(plot, panel, cell).map_err(failed)?;
        }
        Ok(())
    })
}

/// A plotters error as the message of a picture that could not be drawn.
fn failed(e: impl std::fmt::Display) -> String {
    format!("plotters: {e}")
}

/// A white picture of `size` whose top [`TITLE_HEIGHT`] pixels are a strip with `title` centred at
/// height `title_y`; `draw` adds the rest to the strip and to the body below it.
fn canvas(
    (width, height): (u32, u32),
    title: &str,
    title_y: i32,
    draw: impl FnOnce(&Area, &Area) -> Result<(), String>,
) -> Result<RgbImage, String> {
    if !font_ready() {
        return Err("the embedded font DejaVuSans.ttf could not be read".into());
    }
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let (top, body) = root.split_vertically(TITLE_HEIGHT);
        let title_style = TextStyle::from((FAMILY, 22).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        top.draw_text(title, &title_style, (width as i32 / 2, title_y))
            .map_err(failed)?;
        draw(&top, &body)?;
        root.present().map_err(failed)?;
    }
    RgbImage::from_raw(width, height, buffer)
        .ok_or_else(|| "the picture buffer has the wrong size".to_string())
}

/// Colours of the curves of [`draw_curves`] (matplotlib's tab10), and their markers' cycle.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Several named curves on one plot (x: epoch, y: a loss), each a colour of [`PALETTE`] with a marker
/// on every point (filled for the first ten, rings for the next ten, squares after), and a legend at
/// the right naming them in order.
pub fn draw_curves(
    title: &str,
    y_desc: &str,
    curves: &[(&str, Vec<(f64, f64)>)],
) -> Result<RgbImage, String> {
    if curves.is_empty() {
        return Err("there are no runs to draw".into());
    }
    let longest = curves
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    let legend_width = (70 + 8 * longest as u32).clamp(160, 520);
    let legend_height = 40 + 22 * curves.len() as u32;
    let (chart_width, chart_height) = (820u32, 520u32.max(legend_height + 20));
    let size = (chart_width + legend_width, TITLE_HEIGHT + chart_height);
    canvas(size, title, 30, |_, body| {
        let (chart_area, legend) = body.split_horizontally(chart_width);
        let points = curves.iter().flat_map(|(_, c)| c.iter());
        let (x_max, lo, hi) = points.fold(
            (1.0f64, f64::INFINITY, f64::NEG_INFINITY),
            |(x, lo, hi), &(e, v)| match v.is_finite() {
                true => (x.max(e), lo.min(v), hi.max(v)),
                false => (x.max(e), lo, hi),
            },
        );
        let (y0, y1) = padded(lo, hi);
        let n = x_max.round() as usize;
        let step = x_step(n);
        let mut chart = ChartBuilder::on(&chart_area)
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(76)
            .build_cartesian_2d((0.0..x_max + 0.5).step(step as f64), y0..y1)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_desc)
            .x_labels(n / step + 2)
            .x_label_formatter(&|x| match x.round() as i64 {
                0 => String::new(),
                e => e.to_string(),
            })
            .y_label_formatter(&|v| tick(*v, y1 - y0))
            .y_labels(8)
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(failed)?;
        for (i, (_, curve)) in curves.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(curve.clone(), colour.stroke_width(2)))
                .map_err(failed)?;
            chart
                .draw_series(curve.iter().map(|&p| {
                    let (r, style) = marker(i, colour);
                    Circle::new(p, r, style)
                }))
                .map_err(failed)?;
        }
        let label = TextStyle::from((FAMILY, 14).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (name, _)) in curves.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let y = 40 + 22 * i as i32;
            legend
                .draw(&PathElement::new([(8, y), (40, y)], colour.stroke_width(2)))
                .map_err(failed)?;
            let (r, style) = marker(i, colour);
            legend
                .draw(&Circle::new((24, y), r, style))
                .map_err(failed)?;
            legend.draw_text(name, &label, (48, y)).map_err(failed)?;
        }
        Ok(())
    })
}

/// The marker of curve `i`: its radius and style, a filled circle, a ring, or a faded dot as the colours
/// come round again.
fn marker(i: usize, colour: RGBColor) -> (i32, ShapeStyle) {
    match (i / PALETTE.len()) % 3 {
        0 => (4, colour.filled()),
        1 => (5, colour.stroke_width(2)),
        _ => (3, colour.mix(0.5).filled()),
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult =
    Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

/// One panel: axes with ticks, the train and test curves with a marker per epoch, a legend, and in a
/// run that pretrains the phases' names and borders.
fn draw_panel(plot: &LossPlot, panel: &Panel, area: &Area) -> DrawResult {
    let n = plot.lines();
    let finite = panel
        .train
        .iter()
        .chain(&panel.test)
        .flatten()
        .copied()
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (y0, y1) = padded(lo, hi);
    let phased = plot.phases.iter().any(Option::is_some);
    let x_desc = if phased {
        "epoch (each phase counts its own)"
    } else {
        "epoch"
    };
    let caption = match panel.name.as_str() {
        "loss" => "loss (the objective's total)".to_string(),
        name => name.to_string(),
    };
    let step = x_step(n);
    let x_range = (0.0..n as f64 + 1.0).step(step as f64);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y0..y1)?;
    // The x axis counts lines of metrics.csv; its labels are each line's own epoch number.
    let epoch_of = |x: &f64| -> String {
        let line = x.round() as usize;
        match plot.phases.get(line.wrapping_sub(1)) {
            Some(Some(_)) => epoch_in_phase(&plot.phases, line - 1).to_string(),
            Some(None) if line >= 1 => line.to_string(),
            _ => String::new(),
        }
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("mean per epoch")
        .x_labels(n / step + 2)
        .x_label_formatter(&epoch_of)
        .y_label_formatter(&|v| tick(*v, y1 - y0))
        .y_labels(6)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;
    if phased {
        for (start, name) in phase_starts(&plot.phases) {
            if start > 0 {
                let x = start as f64 + 0.5;
                chart.draw_series(DashedLineSeries::new(
                    [(x, y0), (x, y1)],
                    3,
                    3,
                    SEPARATOR.stroke_width(1),
                ))?;
            }
            chart.draw_series(std::iter::once(Text::new(
                name,
                (start as f64 + 0.6, y1 - 0.02 * (y1 - y0)),
                (FAMILY, 12).into_font().color(&SEPARATOR),
            )))?;
        }
    }
    for (values, solid) in [(&panel.train, true), (&panel.test, false)] {
        let colour = if solid { TRAIN } else { TEST };
        let style = colour.stroke_width(2);
        for segment in segments(values, &plot.phases) {
            let points: Vec<(f64, f64)> =
                segment.iter().map(|&(i, v)| (i as f64 + 1.0, v)).collect();
            if solid {
                chart.draw_series(LineSeries::new(points.clone(), style))?;
            } else {
                chart.draw_series(DashedLineSeries::new(points.clone(), 7, 5, style))?;
            }
            chart.draw_series(points.iter().map(|&p| match solid {
                true => Circle::new(p, 3, colour.filled()),
                false => Circle::new(p, 4, colour.stroke_width(2)),
            }))?;
        }
    }
    Ok(())
}

/// The one legend, at the right of the title strip from (`left`, `y`): a solid train line with its
/// filled marker, a dashed test line with its ring.
fn draw_legend(area: &Area, left: i32, y: i32) -> DrawResult {
    let label = TextStyle::from((FAMILY, 15).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    area.draw(&PathElement::new(
        [(left, y), (left + 36, y)],
        TRAIN.stroke_width(2),
    ))?;
    area.draw(&Circle::new((left + 18, y), 3, TRAIN.filled()))?;
    area.draw_text("train", &label, (left + 44, y))?;
    let left = left + 100;
    area.draw(&DashedPathElement::new(
        [(left, y), (left + 36, y)],
        7,
        5,
        TEST.stroke_width(2),
    ))?;
    area.draw(&Circle::new((left + 18, y), 4, TEST.stroke_width(2)))?;
    area.draw_text("test", &label, (left + 44, y))?;
    Ok(())
}

/// The y range shown for values from `lo` to `hi`: 8 % of room above and below, and a unit-wide range
/// around a constant (or missing) curve.
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi > lo {
        let pad = 0.08 * (hi - lo);
        return (lo - pad, hi + pad);
    }
    let pad = (lo.abs() * 0.1).max(1e-3);
    (lo - pad, hi + pad)
}

/// The distance between labelled lines: 1, 2, 5, 10, 20, … so that at most 10 are labelled.
fn x_step(n: usize) -> usize {
    [1, 2, 5]
        .iter()
        .flat_map(|&m| (0..10).map(move |e| m * 10usize.pow(e)))
        .filter(|&s| n / s <= 10)
        .min()
        .unwrap_or(1)
}

/// A tick value with at most four significant digits, in scientific form when very large or small; a
/// value within a millionth of the axis' `span` of zero is 0 (not a rounding error's 1.7e-18).
fn tick(v: f64, span: f64) -> String {
    let v = if v.abs() <= 1e-6 * span { 0.0 } else { v };
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let digits = if a == 0.0 {
        0
    } else {
        (3 - a.log10().floor() as i32).clamp(0, 6) as usize
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The epoch number within its phase of line `i`: lines of a phase count from 1.
fn epoch_in_phase(phases: &[Option<String>], i: usize) -> usize {
    phases[..=i]
        .iter()
        .rev()
        .take_while(|p| **p == phases[i])
        .count()
}

/// The first line of every phase, with its name.
fn phase_starts(phases: &[Option<String>]) -> Vec<(usize, String)> {
    let mut starts = Vec::new();
    for (i, phase) in phases.iter().enumerate() {
        if let Some(name) = phase
            && (i == 0 || phases[i - 1] != *phase)
        {
            starts.push((i, name.clone()));
        }
    }
    starts
}

/// Runs of consecutive lines where `values` has a finite value, within one phase: (line, value).
fn segments(values: &[Option<f64>], phases: &[Option<String>]) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut open = false;
    for (i, v) in values.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => {
                let same_phase = i > 0 && phases.get(i) == phases.get(i - 1);
                if open && same_phase {
                    out.last_mut().expect("an open segment").push((i, v));
                } else {
                    out.push(vec![(i, v)]);
                }
                open = true;
            }
            None => open = false,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> MetricsTable {
        let mut lines = text.lines();
        MetricsTable {
            header: lines.next().unwrap().split(',').map(String::from).collect(),
            rows: lines
                .map(|l| l.split(',').map(String::from).collect())
                .collect(),
        }
    }

    #[test]
    fn a_reconstruction_equal_to_the_loss_gets_no_panel_of_its_own() {
        let t = table(
            "epoch,step,train_loss,test_loss,seconds,samples_per_second,train_recon,test_recon,train_code_mean,test_code_mean\n\
             1,10,0.5,0.4,1.0,10.0,0.5,0.4,0.7,0.6",
        );
        let plot = LossPlot::from_metrics(&t, "t", "");
        let names: Vec<&str> = plot.panels.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["loss", "code_mean"]);
    }

    #[test]
    fn every_term_of_a_penalised_run_gets_a_panel() {
        let t = table(
            "epoch,step,train_loss,test_loss,seconds,samples_per_second,train_recon,test_recon,train_l1,test_l1\n\
             1,10,0.6,0.5,1.0,10.0,0.5,0.4,0.1,0.1\n2,20,0.5,0.45,1.0,10.0,0.41,0.36,0.09,0.09",
        );
        let plot = LossPlot::from_metrics(&t, "t", "");
        let names: Vec<&str> = plot.panels.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["loss", "recon", "l1"]);
        assert_eq!(plot.panels[2].test, [Some(0.1), Some(0.09)]);
    }

    #[test]
    fn curves_break_at_missing_values_and_at_phase_borders() {
        let phases: Vec<Option<String>> = ["a", "a", "b", "b", "b"]
            .map(|p| Some(p.to_string()))
            .to_vec();
        let values = [Some(1.0), Some(2.0), Some(3.0), None, Some(5.0)];
        let runs = segments(&values, &phases);
        assert_eq!(
            runs,
            [vec![(0, 1.0), (1, 2.0)], vec![(2, 3.0)], vec![(4, 5.0)]]
        );
        assert_eq!(epoch_in_phase(&phases, 4), 3);
        assert_eq!(phase_starts(&phases), [(0, "a".into()), (2, "b".into())]);
    }

    #[test]
    fn at_most_ten_epochs_are_labelled() {
        assert_eq!(x_step(1), 1);
        assert_eq!(x_step(10), 1);
        assert_eq!(x_step(37), 5);
        assert_eq!(x_step(1000), 100);
    }

    #[test]
    fn ticks_keep_four_significant_digits() {
        assert_eq!(tick(0.10845, 1.0), "0.1085");
        assert_eq!(tick(102.5, 1.0), "102.5");
        assert_eq!(tick(0.0, 1.0), "0");
        assert_eq!(tick(2.0e-5, 1e-4), "2.00e-5");
        assert_eq!(tick(1.73e-18, 0.02), "0", "a rounding error next to zero");
    }

    #[test]
    fn a_one_epoch_run_draws_a_picture_with_ink_in_both_colours() {
        let t = table(
            "epoch,step,train_loss,test_loss,seconds,samples_per_second,train_recon,test_recon,train_l1,test_l1\n\
             1,10,0.6,0.5,1.0,10.0,0.5,0.4,0.1,0.1",
        );
        let picture = draw(&LossPlot::from_metrics(&t, "sparse-ae", "bce + l1")).unwrap();
        assert_eq!(picture.width(), 2 * PANEL.0);
        let has = |c: RGBColor| picture.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(TRAIN) && has(TEST), "both markers are drawn");
        assert!(picture.pixels().any(|p| p.0 == [0, 0, 0]), "text and axes");
    }
}
