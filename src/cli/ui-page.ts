/**
 * The page `pnet ui` serves: the network as a cytoscape.js graph refreshed every second (nodes
 * and links as they come and go; known hosts missing from the map listed apart), a node's info,
 * peers, routes and counters (node.stats()) on click with the daemon's path to it highlighted, and an exec whose hosts
 * change colour as their answers arrive. `window.pnetUi` exposes its state for tests.
 */
export const UI_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pnet map</title>
<style>
  body { margin: 0; font: 13px system-ui, sans-serif; display: grid; grid-template-columns: 1fr 380px; height: 100vh; }
  #map { height: 100vh; min-width: 0; overflow: hidden; }
  aside { border-left: 1px solid #ccc; padding: 8px 12px; overflow: auto; }
  h2 { font-size: 14px; margin: 12px 0 4px; }
  pre { white-space: pre-wrap; word-break: break-all; background: #f6f6f6; padding: 4px; }
  table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #eee; text-align: left; padding: 2px 4px; }
  .missing { color: #a00; }
  input { width: 120px; }
</style>
</head>
<body>
<div id="map"></div>
<aside>
  <div id="status">connecting…</div>
  <h2>exec</h2>
  <form id="exec"><input id="targets" value="all" title="all, KEY=VALUE, or ids"> <input id="command" placeholder="command"> <button>run</button></form>
  <div id="execStatus"></div>
  <h2>missing hosts</h2>
  <div id="missing">none</div>
  <h2 id="detailTitle">click a node</h2>
  <div id="details"></div>
</aside>
<script src="/cytoscape.js"></script>
<script>
const token = new URLSearchParams(location.search).get('token');
const api = (path) => fetch(path + (path.includes('?') ? '&' : '?') + 'token=' + token).then((r) => r.json());
const colours = { pending: '#e0b000', ok: '#2a2', failed: '#d22', timeout: '#e70' };
const cy = cytoscape({
  container: document.getElementById('map'),
  maxZoom: 2,
  style: [
    { selector: 'node', style: { label: 'data(label)', 'background-color': '#68a', 'font-size': 10, width: 22, height: 22 } },
    { selector: 'node.self', style: { shape: 'round-rectangle', 'background-color': '#246' } },
    { selector: 'edge', style: { width: 2, 'line-color': '#bbb', label: 'data(cost)', 'font-size': 8 } },
    { selector: 'edge.path', style: { 'line-color': '#f80', width: 5 } },
    { selector: 'node.path', style: { 'border-color': '#f80', 'border-width': 4 } },
    ...Object.entries(colours).map(([status, colour]) => ({ selector: 'node.' + status, style: { 'background-color': colour } })),
  ],
});
const state = { self: undefined, ready: false, exec: {}, missing: [], errors: 0 };
const short = (id) => id.slice(0, 8);

function sync(map) {
  state.self = map.self;
  let changed = false;
  const ids = new Set(map.nodes.map((n) => n.id));
  for (const node of cy.nodes()) if (!ids.has(node.id())) { node.remove(); changed = true; }
  for (const n of map.nodes) {
    const label = n.name ? n.name : short(n.id);
    const existing = cy.getElementById(n.id);
    if (existing.empty()) { cy.add({ group: 'nodes', data: { id: n.id, label } }); changed = true; }
    else existing.data('label', label);
    cy.getElementById(n.id).toggleClass('self', n.id === map.self);
  }
  const pairs = new Map();
  for (const l of map.links) {
    const key = l.from < l.to ? l.from + '|' + l.to : l.to + '|' + l.from;
    if (ids.has(l.from) && ids.has(l.to) && !pairs.has(key)) pairs.set(key, l);
  }
  for (const edge of cy.edges()) if (!pairs.has(edge.id())) { edge.remove(); changed = true; }
  for (const [key, l] of pairs) {
    if (cy.getElementById(key).empty()) { cy.add({ group: 'edges', data: { id: key, source: l.from, target: l.to, cost: l.cost } }); changed = true; }
  }
  if (changed) {
    cy.resize();
    cy.layout({ name: 'cose', animate: false, padding: 60 }).run();
  }
  state.missing = map.missing;
  document.getElementById('missing').innerHTML = map.missing.length === 0 ? 'none'
    : map.missing.map((h) => '<div class="missing">' + (h.name || short(h.nodeId)) + ' — last reachable ' + h.lastReachable + '</div>').join('');
  document.getElementById('status').textContent = cy.nodes().length + ' nodes, ' + cy.edges().length + ' links (from ' + short(map.self) + ')';
  state.ready = true;
}

async function refresh() {
  try { sync(await api('/api/map')); } catch (e) { state.errors++; document.getElementById('status').textContent = 'daemon not answering: ' + e; }
}

function highlightPath(id) {
  cy.elements().removeClass('path');
  if (!state.self || cy.getElementById(id).empty()) return [];
  const paths = cy.elements().dijkstra({ root: cy.getElementById(state.self), weight: (e) => Number(e.data('cost')) || 1 });
  const path = paths.pathTo(cy.getElementById(id));
  path.addClass('path');
  return path.nodes().map((n) => n.id());
}

function rows(list, cols) {
  if (!Array.isArray(list)) return '<pre>' + JSON.stringify(list, null, 1) + '</pre>';
  return '<table><tr>' + cols.map((c) => '<th>' + c + '</th>').join('') + '</tr>' +
    list.map((r) => '<tr>' + cols.map((c) => '<td>' + (typeof r[c] === 'string' && r[c].length > 20 ? short(r[c]) : r[c]) + '</td>').join('') + '</tr>').join('') + '</table>';
}

async function select(id) {
  const path = highlightPath(id);
  document.getElementById('detailTitle').textContent = 'node ' + id;
  const d = await api('/api/node?id=' + id);
  state.details = d;
  document.getElementById('details').innerHTML =
    '<h2>path from the daemon</h2><div>' + path.map(short).join(' → ') + '</div>' +
    '<h2>info</h2><pre>' + JSON.stringify(d.info, null, 1) + '</pre>' +
    '<h2>peers</h2>' + rows(d.peers, ['nodeId', 'address', 'transport', 'rttMs', 'streams']) +
    '<h2>routes</h2>' + rows(d.routes, ['nodeId', 'nextHop', 'hops', 'cost']) +
    '<h2>stats</h2><pre id="stats">' + JSON.stringify(d.stats, null, 1) + '</pre>';
  return d;
}

function exec(targets, command) {
  return new Promise((resolve) => {
    for (const status of Object.keys(colours)) cy.nodes().removeClass(status);
    state.exec = {};
    const source = new EventSource('/api/exec?token=' + token + '&targets=' + encodeURIComponent(targets) + '&command=' + encodeURIComponent(command));
    const show = () => { document.getElementById('execStatus').textContent = Object.values(state.exec).filter((s) => s !== 'pending').length + '/' + Object.keys(state.exec).length + ' answered'; };
    source.addEventListener('start', (e) => { for (const id of JSON.parse(e.data).targets) { state.exec[id] = 'pending'; cy.getElementById(id).addClass('pending'); } show(); });
    source.addEventListener('result', (e) => { const r = JSON.parse(e.data); state.exec[r.nodeId] = r.status; cy.getElementById(r.nodeId).removeClass('pending').addClass(r.status); show(); });
    const end = () => { source.close(); resolve(state.exec); };
    source.addEventListener('done', end);
    source.addEventListener('failed', (e) => { document.getElementById('execStatus').textContent = 'failed: ' + e.data; end(); });
  });
}

cy.on('tap', 'node', (e) => void select(e.target.id()));
document.getElementById('exec').addEventListener('submit', (e) => { e.preventDefault(); void exec(document.getElementById('targets').value, document.getElementById('command').value); });
window.pnetUi = {
  get ready() { return state.ready; },
  nodeCount: () => cy.nodes().length,
  linkCount: () => cy.edges().length,
  ids: () => cy.nodes().map((n) => n.id()),
  missing: () => state.missing.map((h) => h.nodeId),
  pathClasses: () => cy.elements('.path').map((e) => e.id()),
  status: (id) => state.exec[id],
  select, exec,
};
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
`;
