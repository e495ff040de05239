// Internal header (api layer). The HTML page served at "/rpcz": the traces
// this node holds (from /rpcz.json), newest first, each as a tree of spans
// (call, its attempts, the provider's serve span, nested calls) with a bar
// on a common time axis. The filters (service, minimum latency, errors
// only) are the page's query string, passed on to /rpcz.json. No external
// assets. Spans recorded on other members are not here: `broach trace`
// gathers a trace from every member.
#pragma once

namespace broach::api {

inline constexpr const char* kRpczPage = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>BroachRpc traces</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}table{border-collapse:collapse;margin-bottom:1.2em}
td,th{padding:.2em .7em;border-bottom:1px solid #eee;text-align:left;font-size:.92em}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.err{color:#b00}.bar{background:#4a90d9;height:.8em;display:inline-block;min-width:1px}
.trace{font-family:monospace}form input{margin-right:.8em}
</style></head><body>
<h1>Traces held by this node</h1>
<form id="f">service <input name="service" size="12"> min ms <input name="min_ms" size="5">
errors only <input type="checkbox" name="errors" value="1"> <button>filter</button>
<a href="/">status page</a></form>
<p id="summary"></p><div id="traces"></div>
<script>
const q = new URLSearchParams(location.search);
for (const [k, v] of q) { const e = document.querySelector('[name="' + k + '"]'); if (e) { if (e.type == 'checkbox') e.checked = v == '1'; else e.value = v; } }
document.getElementById('f').onsubmit = ev => {
  ev.preventDefault(); const p = new URLSearchParams();
  for (const e of ev.target.elements) { if (!e.name) continue; if (e.type == 'checkbox') { if (e.checked) p.set(e.name, '1'); } else if (e.value) p.set(e.name, e.value); }
  location.search = p.toString();
};
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const ms = us => (us / 1000).toFixed(us < 10000 ? 3 : 1);
fetch('/rpcz.json?' + q.toString()).then(r => r.ok ? r.json() : r.text().then(t => { throw t; })).then(d => {
  document.getElementById('summary').textContent = (d.tracing ? 'tracing on' : 'tracing off (no traced call seen yet)') +
    ', sample rate ' + d.sample_rate + ', ' + d.traces_kept + ' traces kept, ' + d.spans_recorded + ' spans recorded, ' +
    d.spans_dropped + ' dropped, ' + d.traces_evicted + ' traces evicted; ' + d.traces.length + ' shown';
  let html = '';
  for (const t of d.traces) {
    const ids = new Set(t.spans.map(s => s.span_id));
    const kids = {};
    for (const s of t.spans) { const p = ids.has(s.parent_id) ? s.parent_id : ''; (kids[p] = kids[p] || []).push(s); }
    const t0 = Math.min(...t.spans.map(s => s.start_us));
    const t1 = Math.max(...t.spans.map(s => s.start_us + s.duration_us));
    const span = Math.max(1, t1 - t0);
    html += '<table><tr><th colspan="7" class="trace">trace ' + t.trace_id + '</th></tr>' +
      '<tr><th>span</th><th>service</th><th>node</th><th>peer</th><th>outcome</th><th>ms</th><th>timeline</th></tr>';
    const walk = (p, depth) => {
      for (const s of (kids[p] || []).sort((a, b) => a.start_us - b.start_us)) {
        let extra = '';
        if (s.kind == 'call') extra = ' (' + s.attempts + ' attempt' + (s.attempts == 1 ? '' : 's') + ')';
        if (s.kind == 'attempt') {
          const bits = [];
          if (s.policy) bits.push(s.policy + ' of ' + s.candidates + (s.fused ? ', ' + s.fused + ' fused' : '') + (s.probe ? ', breaker probe' : ''));
          if (s.sends > 1) bits.push(s.sends + ' sends');
          if (s.hedge) bits.push('hedge');
          if (bits.length) extra = ' (' + bits.join(', ') + ')';
        }
        if (s.kind == 'serve') extra = ' (queue ' + ms(Math.max(0, s.queue_us)) + ' ms, ' + s.response_bytes + ' B)';
        const left = (s.start_us - t0) / span * 300, width = s.duration_us / span * 300;
        html += '<tr><td>' + '&nbsp;'.repeat(depth * 3) + s.kind + extra + '</td><td>' + esc(s.service) + '</td><td>' +
          esc(s.node) + '</td><td>' + esc(s.peer || '(by name)') + '</td><td class="' + (s.outcome == 'ok' ? '' : 'err') +
          '" title="' + esc(s.message || '') + '">' + esc(s.outcome) + '</td><td class="n">' + ms(s.duration_us) +
          '</td><td><span class="bar" style="margin-left:' + left.toFixed(1) + 'px;width:' + width.toFixed(1) +
          'px"></span></td></tr>';
        walk(s.span_id, depth + 1);
      }
    };
    walk('', 0);
    html += '</table>';
  }
  document.getElementById('traces').innerHTML = html || '<p>No trace matches.</p>';
}).catch(e => { document.getElementById('summary').textContent = 'error: ' + e; });
</script></body></html>
)HTML";

}  // namespace broach::api
