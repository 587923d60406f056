//! A small parser for the Prometheus text format as Envoy's `/stats/prometheus` writes it.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Scrape { samples }
    }

    /// Samples named `name` whose labels include every pair in `want`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Sum of the matching samples (0 when none).
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.find(name, want).map(|s| s.value).sum()
    }

    /// The one matching sample's value, if exactly one matches.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let mut it = self.find(name, want);
        let first = it.next()?.value;
        match it.next() {
            None => Some(first),
            Some(_) => None,
        }
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.samples.iter().map(|s| s.name.as_str()).collect();
        names.dedup();
        names
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.find('{') {
        Some(i) => (
            &series[..i],
            parse_labels(series[i + 1..].strip_suffix('}')?)?,
        ),
        None => (series, BTreeMap::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` with Prometheus escapes (`\\`, `\"`, `\n`).
fn parse_labels(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    while !s.is_empty() {
        let eq = s.find("=\"")?;
        let key = s[..eq].trim_start_matches(',').to_string();
        let mut value = String::new();
        let mut chars = s[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
        s = &s[end?..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envoy_output() {
        let text = "# TYPE llm_requests_total counter\nllm_requests_total{model=\"a\\\"b\",error_type=\"\"} 3\nllm_x_sum{model=\"m\"} 154838.70967741936328820884227753\nenvoy_up 1\n";
        let s = Scrape::parse(text);
        assert_eq!(s.samples.len(), 3);
        assert_eq!(
            s.value(
                "llm_requests_total",
                &[("model", "a\"b"), ("error_type", "")]
            ),
            Some(3.0)
        );
        assert!((s.sum("llm_x_sum", &[]) - 154838.7).abs() < 0.1);
        assert_eq!(s.value("envoy_up", &[]), Some(1.0));
    }
}
