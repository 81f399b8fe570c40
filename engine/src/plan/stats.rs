//! Repetition statistics, netperf style: the mean and its confidence
//! interval from Student's t, and the stopping rule "enough repetitions
//! once the interval is within ±width/2 of the mean".

use serde::{Deserialize, Serialize};

/// Two-sided Student t quantiles for 1..=30 degrees of freedom.
const T90: [f64; 30] = [
    6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771,
    1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706,
    1.703, 1.701, 1.699, 1.697,
];
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];
const T99: [f64; 30] = [
    63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012,
    2.977, 2.947, 2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779,
    2.771, 2.763, 2.756, 2.750,
];

fn t_quantile(confidence: u32, df: usize) -> f64 {
    let (table, normal) = match confidence {
        90 => (&T90, 1.645),
        95 => (&T95, 1.960),
        _ => (&T99, 2.576),
    };
    table.get(df.wrapping_sub(1)).copied().unwrap_or(normal)
}

/// Mean and confidence interval of repeated measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    /// The middle sample (the mean of the two middle ones for an even
    /// count): a plan point's value, steady against one odd repetition.
    #[serde(default)]
    pub median: f64,
    pub samples: usize,
    pub confidence: u32,
    /// Half-width of the interval; None with a single sample.
    pub half_width: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Summary {
    pub fn of(xs: &[f64], confidence: u32) -> Summary {
        let n = xs.len();
        if n == 0 {
            return Summary {
                confidence,
                ..Default::default()
            };
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let half = (n > 1).then(|| {
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t_quantile(confidence, n - 1) * (var / n as f64).sqrt()
        });
        let mut sorted = xs.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = (sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0;
        Summary {
            mean,
            median,
            samples: n,
            confidence,
            half_width: half,
            low: half.map(|h| mean - h),
            high: half.map(|h| mean + h),
        }
    }

    /// Interval width as a percent of the mean (both sides).
    pub fn width_percent(&self) -> Option<f64> {
        self.half_width
            .filter(|_| self.mean > 0.0)
            .map(|h| 200.0 * h / self.mean)
    }

    /// Whether the interval is within `width` percent of the mean.
    pub fn within(&self, width: f64) -> bool {
        self.width_percent().is_some_and(|w| w <= width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_from_t() {
        let s = Summary::of(&[10.0, 12.0, 11.0, 13.0, 9.0], 95);
        assert_eq!(s.mean, 11.0);
        // sd = sqrt(2.5); t(95%, 4) = 2.776
        let h = 2.776 * (2.5f64 / 5.0).sqrt();
        assert!((s.half_width.unwrap() - h).abs() < 1e-9);
        assert!(!s.within(10.0));
        assert!(s.within(40.0));
        let one = Summary::of(&[5.0], 99);
        assert_eq!(one.half_width, None);
        assert!(!one.within(100.0));
        let same = Summary::of(&[5.0, 5.0], 99);
        assert!(same.within(0.1));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(Summary::of(&[10.0, 12.0, 11.0, 13.0, 9.0], 95).median, 11.0);
        // one slow repetition moves the mean, not the median
        assert_eq!(Summary::of(&[900.0, 940.0, 500.0], 95).median, 900.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 3.0, 2.0], 95).median, 2.5);
        assert_eq!(Summary::of(&[], 95).median, 0.0);
    }
}
