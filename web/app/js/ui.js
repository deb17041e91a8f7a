// Small DOM helpers: elements built with text content only (never HTML from data), the status
// line, and times.

export const $ = (id) => document.getElementById(id);

/** An element with attributes and children; strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return node;
}

export function status(message, tone = '') {
  const s = $('status');
  s.textContent = message || '';
  s.className = `status ${tone}`.trim();
}

export function show(id, visible) {
  $(id).hidden = !visible;
}

/** `<time>` with the local clock time, and the full date and time on hover. */
export function time(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return el('time', {}, '');
  const today = new Date().toDateString() === d.toDateString();
  const short = today
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  return el('time', { datetime: d.toISOString(), title: d.toLocaleString() }, short);
}
