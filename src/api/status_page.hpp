// Internal header (api layer). The HTML status page served at "/": charts
// of the last ten minutes (from /series.json, drawn with the Chart.js the
// node serves at /chart.js), members with their state, services with call
// rate, errors and latency, refreshed every second by a few lines of script
// (no external assets: it works on a LAN with no internet). Without
// /chart.js (built without libjs-chart.js) it shows the tables only.
// Each chart's canvas reports what it drew in data-points (points plotted)
// and data-pixels (pixels not left blank): the headless browser test reads
// them.
#pragma once

namespace broach::api {

inline constexpr const char* kStatusPage = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>BroachRpc node</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.alive{color:#070}.suspect{color:#a60}.dead{color:#b00}.left{color:#777}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1em}
.chart h3{font-size:.95em;margin:.2em 0}.chart .box{position:relative;height:220px}
</style><script src="/chart.js"></script></head><body>
<h1 id="title">BroachRpc</h1>
<div id="summary"></div>
<h2>Last ten minutes</h2>
<div id="charts" class="charts"></div>
<p id="charts-state"></p>
<h2>Members</h2>
<table id="members"><thead><tr><th>address</th><th>name</th><th>version</th><th>state</th><th>incarnation</th><th>services</th></tr></thead><tbody></tbody></table>
<h2>Routes (as this node calls them)</h2>
<table id="routes"><thead><tr><th>service</th><th>provider</th><th>name</th><th>state</th><th>breaker</th><th>in flight</th><th>latency avg us</th><th>slow start</th></tr></thead><tbody></tbody></table>
<h2>Membership events (newest first)</h2>
<table id="events"><thead><tr><th>time</th><th>event</th><th>address</th><th>name</th></tr></thead><tbody></tbody></table>
<h2>Recent errors of calls made by this node (newest first)</h2>
<table id="errors"><thead><tr><th>time</th><th>service</th><th>provider</th><th>error</th><th>message</th></tr></thead><tbody></tbody></table>
<h2>Services (this node)</h2>
<table id="services"><thead><tr><th>service</th><th>served/s</th><th>served</th><th>errors</th><th>p50 us</th><th>p99 us</th><th>made/s</th><th>made</th><th>errors</th><th>p50 us</th><th>p99 us</th></tr></thead><tbody></tbody></table>
<script>
let last = null, lastT = 0;
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function errs(o){let n=0;for(const k in o)n+=o[k];return n;}
async function refresh(){
  try{
    const [st, members] = await Promise.all([fetch('/status.json').then(r=>r.json()), fetch('/members').then(r=>r.json())]);
    const now = Date.now()/1000, dt = last ? now-lastT : 0;
    document.getElementById('title').textContent = 'BroachRpc node ' + st.address + ' (' + st.name + ' ' + st.version + ')';
    const m = st.membership;
    document.getElementById('summary').textContent = m.alive+' alive, '+m.suspect+' suspect, '+m.dead+' dead, '+m.left+' left; '+st.transport.retransmits+' retransmits; pool '+st.pool.threads+' threads, '+st.pool.queued+' queued';
    document.querySelector('#members tbody').innerHTML = members.map(x=>'<tr><td>'+esc(x.address)+'</td><td>'+esc(x.name)+'</td><td>'+esc(x.version)+'</td><td class="'+esc(x.state)+'">'+esc(x.state)+'</td><td class="n">'+x.incarnation+'</td><td>'+esc(x.services.join(', '))+'</td></tr>').join('');
    let rows='';
    for(const [name,s] of Object.entries(st.services)){
      const p = last && last.services[name];
      const rs = p&&dt>0 ? ((s.served-p.served)/dt).toFixed(1) : '-';
      const rm = p&&dt>0 ? ((s.made-p.made)/dt).toFixed(1) : '-';
      rows+='<tr><td>'+esc(name)+'</td><td class="n">'+rs+'</td><td class="n">'+s.served+'</td><td class="n">'+errs(s.served_errors)+'</td><td class="n">'+s.served_latency_us.p50.toFixed(0)+'</td><td class="n">'+s.served_latency_us.p99.toFixed(0)+'</td><td class="n">'+rm+'</td><td class="n">'+s.made+'</td><td class="n">'+errs(s.made_errors)+'</td><td class="n">'+s.made_latency_us.p50.toFixed(0)+'</td><td class="n">'+s.made_latency_us.p99.toFixed(0)+'</td></tr>';
    }
    document.querySelector('#services tbody').innerHTML = rows;
    let routes = '';
    for (const [svc, provs] of Object.entries(st.route_table||{})) {
      for (const p of provs) {
        const bcls = p.breaker === 'closed' ? 'alive' : p.breaker === 'open' ? 'dead' : 'suspect';
        routes += '<tr><td>'+esc(svc)+'</td><td>'+esc(p.address)+'</td><td>'+esc(p.name)+'</td><td class="'+esc(p.state)+'">'+esc(p.state)+'</td><td class="'+bcls+'">'+esc(p.breaker)+'</td><td class="n">'+p.in_flight+'</td><td class="n">'+(p.latency_ewma_us ? p.latency_ewma_us.toFixed(0) : '-')+'</td><td>'+(p.warmth < 1 ? (100*p.warmth).toFixed(0)+'% of its share' : 'warm')+'</td></tr>';
      }
    }
    document.querySelector('#routes tbody').innerHTML = routes;
    const when = ms => new Date(ms).toLocaleTimeString();
    const cls = e => e.startsWith('alive') || e === 'joined' ? 'alive' : e;
    document.querySelector('#events tbody').innerHTML = (st.events||[]).slice().reverse().map(e=>'<tr><td>'+when(e.time_ms)+'</td><td class="'+esc(cls(e.event))+'">'+esc(e.event)+'</td><td>'+esc(e.address)+'</td><td>'+esc(e.name)+'</td></tr>').join('');
    document.querySelector('#errors tbody').innerHTML = (st.recent_errors||[]).slice().reverse().map(e=>'<tr><td>'+when(e.time_ms)+'</td><td>'+esc(e.service)+'</td><td>'+esc(e.provider)+'</td><td class="dead">'+esc(e.error)+'</td><td>'+esc(e.message)+'</td></tr>').join('');
    last = st; lastT = now;
  }catch(e){document.getElementById('summary').textContent='node unreachable: '+e;}
}
refresh(); setInterval(refresh, 1000);

// Charts: the node's /series.json, merged point by point.
const CHARTS = [
  {id:'calls', title:'calls per second (served, made)', re:/^broach_calls_(served|made)_total\{service="(.*)"\}$/, label:m=>m[2]+' '+m[1], nonzero:true},
  {id:'errors', title:'errors per second by kind', re:/^broach_calls_(served|made)_errors_total\{error="(.*)"\}$/, label:m=>m[2]+' ('+m[1]+')'},
  {id:'latency', title:'latency p50 / p99 (microseconds) per service: served = handler time, made = round trip', re:/^broach_calls_(served|made)_(p50|p99)_us\{service="(.*)"\}$/, label:m=>m[3]+' '+m[1]+' '+m[2], nonzero:true},
  {id:'transport', title:'retransmissions and dropped datagrams per second', re:/^(broach_transport_retransmits_total|broach_datagrams_dropped_total\{reason="(.*)"\})$/, label:m=>m[2]?'dropped: '+m[2]:'retransmits', nonzero:true},
  {id:'members', title:'members by state', re:/^broach_members\{state="(.*)"\}$/, label:m=>m[1]},
];
const COLORS = ['#1f77b4','#d62728','#2ca02c','#ff7f0e','#9467bd','#8c564b','#e377c2','#17becf','#bcbd22','#7f7f7f'];
const S = {times: [], series: {}};
const charts = {};
function merge(j){
  const last = S.times.length ? S.times[S.times.length-1] : -1;
  j.times_ms.forEach((t, i) => {
    if (t <= last) return;
    S.times.push(t);
    for (const name in S.series) S.series[name].push(null);
    for (const [name, s] of Object.entries(j.series)) {
      if (!S.series[name]) S.series[name] = new Array(S.times.length).fill(null);
      S.series[name][S.times.length-1] = s.values[i];
    }
  });
  const extra = S.times.length - 600;
  if (extra > 0) {
    S.times.splice(0, extra);
    for (const name in S.series) S.series[name].splice(0, extra);
  }
}
function draw(){
  if (typeof Chart === 'undefined') {
    document.getElementById('charts-state').textContent = 'Charts unavailable: this node was built without Chart.js (libjs-chart.js).';
    return;
  }
  const now = S.times.length ? S.times[S.times.length-1] : 0;
  let drawn = 0;
  for (const c of CHARTS) {
    const sets = [];
    for (const name of Object.keys(S.series).sort()) {
      const m = name.match(c.re);
      if (!m) continue;
      const vals = S.series[name];
      if (c.nonzero && !vals.some(v => v)) continue;
      const data = [];
      vals.forEach((v, i) => { if (v !== null) data.push({x: (S.times[i]-now)/1000, y: v*(c.scale||1)}); });
      sets.push({label: c.label(m), data, borderColor: COLORS[sets.length % COLORS.length],
                 backgroundColor: COLORS[sets.length % COLORS.length], borderWidth: 1.5, pointRadius: 0, spanGaps: false});
      if (sets.length >= 12) break;
    }
    let ch = charts[c.id];
    if (!ch) {
      const div = document.createElement('div');
      div.className = 'chart';
      // A container of fixed height: Chart.js sizes the canvas to it.
      div.innerHTML = '<h3>'+esc(c.title)+'</h3><div class="box"><canvas id="chart-'+c.id+'"></canvas></div>';
      document.getElementById('charts').appendChild(div);
      ch = charts[c.id] = new Chart(div.querySelector('canvas'), {type: 'line', data: {datasets: sets},
        options: {animation: false, parsing: false, normalized: true, maintainAspectRatio: false,
          scales: {x: {type: 'linear', min: -600, max: 0, title: {display: true, text: 'seconds ago'}}, y: {beginAtZero: true}},
          plugins: {legend: {labels: {boxWidth: 12}}}}});
    } else {
      ch.data.datasets = sets;
      ch.update('none');
    }
    // What was drawn, for anyone checking the page (the browser test).
    const canvas = ch.canvas, ctx = canvas.getContext('2d');
    const img = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    for (let i = 3; i < img.length; i += 4) if (img[i] !== 0) ++inked;
    canvas.dataset.points = sets.reduce((n, d) => n + d.data.length, 0);
    canvas.dataset.pixels = inked;
    ++drawn;
  }
  document.getElementById('charts-state').textContent = drawn + ' charts, ' + S.times.length + ' points each at most';
}
async function refreshSeries(){
  try {
    const j = await fetch('/series.json' + (S.times.length ? '?last=5' : '')).then(r => r.json());
    merge(j);
    draw();
  } catch (e) {}
}
refreshSeries(); setInterval(refreshSeries, 1000);
</script></body></html>
)HTML";

}  // namespace broach::api
