// Internal header (api layer). The HTML status page served at "/": members
// with their state, services with call rate, errors and latency, refreshed
// every second from /status.json by a few lines of script (no external
// assets: it works on a LAN with no internet).
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
</style></head><body>
<h1 id="title">BroachRpc</h1>
<div id="summary"></div>
<h2>Members</h2>
<table id="members"><thead><tr><th>address</th><th>name</th><th>version</th><th>state</th><th>incarnation</th><th>services</th></tr></thead><tbody></tbody></table>
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
    last = st; lastT = now;
  }catch(e){document.getElementById('summary').textContent='node unreachable: '+e;}
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
)HTML";

}  // namespace broach::api
