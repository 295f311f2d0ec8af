//! The Overview's quota forecast: the pool's usable quota played forward a week at the present rate
//! (`planner::forecast::pool`), drawn as an SVG area with the moment it runs dry and the one capacity comes back,
//! and each account's pace and forecast beside it.

use serde_json::{Value, json};

use super::St;
use crate::accounts::steward::forecast_json;
use crate::auth::now_unix;

/// Chart width in SVG units (a point every `planner::forecast::STEP`); the height is 100 (percent).
const WIDTH: f64 = 672.0;

pub(crate) fn forecast_data(dash: &St) -> Value {
    let now = now_unix();
    let (accounts, pool, points) = dash.app.pool.forecasts();
    let horizon = planner::forecast::HORIZON as f64;
    let x = |t: i64| (t as f64 / horizon * WIDTH * 10.0).round() / 10.0;
    let y = |share: f64| (100.0 - share.clamp(0.0, 1.0) * 100.0).round();
    let line: String = points.iter().map(|(t, share)| format!(" L{},{}", x(*t), y(*share))).collect();
    let end = points.last().map(|(t, _)| format!(" L{},100 Z", x(*t))).unwrap_or_default();
    let d = format!("M0,100{line}{end}");
    let list = dash.app.pool.accounts();
    let rows: Vec<Value> = accounts
        .iter()
        .filter_map(|(id, f)| {
            let a = list.iter().find(|a| a.id == *id)?;
            let s = a.stewardship(now, dash.app.pool.quota_correction());
            Some(json!({
                "name": a.display_name(),
                "forecast": forecast_json(f, now),
                "share": if f.capacity > 0.0 { (100.0 * f.usable / f.capacity).round() } else { 0.0 },
                "limit": s["limit"],
                "in_flight": a.in_flight(),
                "streak": s["overload_streak"],
                "policy": s["policy"],
            }))
        })
        .collect();
    json!({
        "now": now,
        "pool": forecast_json(&pool, now),
        "share": if pool.capacity > 0.0 { (100.0 * pool.usable / pool.capacity).round() } else { 0.0 },
        "d": d,
        "width": WIDTH,
        "dry_x": pool.dry_in.map(x),
        "back_x": pool.back_in.map(x),
        "accounts": rows,
    })
}
