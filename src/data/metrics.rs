//! The exporter adapter (`lagFrom.metrics`): reads one region's lag, in
//! seconds, from a Prometheus text or OpenMetrics endpoint.

use std::time::Duration;

/// Fetches `url` and reads `metric` from it: the sample labelled
/// `region="REGION"`, else the only unlabelled one.
pub async fn read(
    http: &reqwest::Client,
    url: &str,
    metric: &str,
    region: &str,
) -> Result<f64, String> {
    let shown = without_userinfo(url);
    let response = http
        .get(url)
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .map_err(|e| format!("GET {shown}: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("GET {shown}: {}", response.status()));
    }
    let body = response
        .text()
        .await
        .map_err(|e| format!("GET {shown}: {}", e.without_url()))?;
    sample(&body, metric, region)
        .ok_or_else(|| format!("{shown} exports no sample of {metric} for {region}"))
}

/// The URL without `user:password@`, for messages.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if !userinfo.contains('/') => format!("{scheme}://{host}"),
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The value of `metric` in an exposition: the sample labelled with the
/// region; when no sample carries a `region` label, the first one (never
/// another region's).
pub fn sample(body: &str, metric: &str, region: &str) -> Option<f64> {
    let label = format!("region=\"{region}\"");
    let mut first = None;
    let mut labelled = false;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once('}')?,
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let value: f64 = value.split_whitespace().next()?.parse().ok()?;
        if labels.contains(&label) {
            return Some(value);
        }
        labelled |= labels.contains("region=");
        first.get_or_insert(value);
    }
    first.filter(|_| !labelled)
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn the_regions_sample_is_read_else_the_first() {
        let body = "# TYPE lag gauge\nlag_total 9\nlag{region=\"us-east\"} 1.5\nlag{region=\"eu-west\"} 4 1700000000\n";
        assert_eq!(sample(body, "lag", "eu-west"), Some(4.0));
        assert_eq!(
            sample(body, "lag", "ap-south"),
            None,
            "never another region's"
        );
        assert_eq!(sample(body, "other", "eu-west"), None);
        assert_eq!(sample("lag 2\n", "lag", "x"), Some(2.0));
    }
}
