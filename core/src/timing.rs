//! Per-stream clock: TTFT at the first token-bearing event, ITL by Dynamo's and SGLang's rule
//! (an event with k tokens arriving d after the previous one gives k samples of d/k), and the
//! request duration. Times are host nanoseconds in, microseconds out.

/// What a token event means for the latency histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTiming {
    /// The first token event: TTFT in µs. Its tokens get no ITL sample.
    First { ttft_us: u64 },
    /// A later event: record `itl_us` `samples` times.
    Next { itl_us: u64, samples: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamClock {
    start_ns: u64,
    first_token_ns: Option<u64>,
    last_token_ns: u64,
    itl_sum_ns: u64,
    itl_samples: u64,
}

impl StreamClock {
    pub fn new(start_ns: u64) -> StreamClock {
        StreamClock {
            start_ns,
            first_token_ns: None,
            last_token_ns: start_ns,
            itl_sum_ns: 0,
            itl_samples: 0,
        }
    }

    /// An event carrying `tokens` (> 0) new output tokens arrived at `now_ns`.
    pub fn on_tokens(&mut self, now_ns: u64, tokens: u32) -> TokenTiming {
        let now_ns = now_ns.max(self.last_token_ns); // the wall clock may step back
        let previous = self.last_token_ns;
        self.last_token_ns = now_ns;
        match self.first_token_ns {
            None => {
                self.first_token_ns = Some(now_ns);
                TokenTiming::First {
                    ttft_us: ns_to_us(now_ns - self.start_ns),
                }
            }
            Some(_) => {
                let samples = tokens.max(1);
                let gap_ns = now_ns - previous;
                self.itl_sum_ns += gap_ns;
                self.itl_samples += u64::from(samples);
                TokenTiming::Next {
                    itl_us: ns_to_us(gap_ns / u64::from(samples)),
                    samples,
                }
            }
        }
    }

    pub fn ttft_us(&self) -> Option<u64> {
        self.first_token_ns.map(|t| ns_to_us(t - self.start_ns))
    }

    /// Mean ITL over the stream, exact (not from histogram buckets).
    pub fn itl_avg_us(&self) -> Option<u64> {
        (self.itl_samples > 0).then(|| ns_to_us(self.itl_sum_ns / self.itl_samples))
    }

    pub fn elapsed_us(&self, now_ns: u64) -> u64 {
        ns_to_us(now_ns.saturating_sub(self.start_ns))
    }
}

/// Rounded to the nearest microsecond.
fn ns_to_us(ns: u64) -> u64 {
    ns.saturating_add(500) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn ttft_then_itl_per_token() {
        let mut c = StreamClock::new(1_000 * MS);
        assert_eq!(c.ttft_us(), None);
        assert_eq!(
            c.on_tokens(1_150 * MS, 1),
            TokenTiming::First { ttft_us: 150_000 }
        );
        assert_eq!(
            c.on_tokens(1_170 * MS, 1),
            TokenTiming::Next {
                itl_us: 20_000,
                samples: 1
            }
        );
        // 3 tokens in one event 60 ms later: three samples of 20 ms.
        assert_eq!(
            c.on_tokens(1_230 * MS, 3),
            TokenTiming::Next {
                itl_us: 20_000,
                samples: 3
            }
        );
        assert_eq!(c.ttft_us(), Some(150_000));
        assert_eq!(c.itl_avg_us(), Some(20_000));
        assert_eq!(c.elapsed_us(1_300 * MS), 300_000);
    }

    #[test]
    fn sub_microsecond_values_round() {
        let mut c = StreamClock::new(0);
        assert_eq!(c.on_tokens(1_499, 1), TokenTiming::First { ttft_us: 1 });
        assert_eq!(
            c.on_tokens(1_499 + 2_500, 2),
            TokenTiming::Next {
                itl_us: 1,
                samples: 2
            }
        );
    }

    #[test]
    fn a_clock_stepping_back_gives_zero_not_overflow() {
        let mut c = StreamClock::new(10 * MS);
        assert_eq!(c.on_tokens(5 * MS, 1), TokenTiming::First { ttft_us: 0 });
        assert_eq!(
            c.on_tokens(4 * MS, 1),
            TokenTiming::Next {
                itl_us: 0,
                samples: 1
            }
        );
        assert_eq!(c.elapsed_us(0), 0);
    }
}
