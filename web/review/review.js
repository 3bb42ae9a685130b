// The review page. Plain browser JavaScript, no framework, nothing fetched from outside the app.
// Every text from the server (blob names are user input) goes into the page through textContent
// or attribute setters, never as HTML.
'use strict';

(function () {
  const BASE = '/api/review/';
  const PAGE_SIZE = 25;
  /** Cases ahead of the current one whose record and images are fetched in advance. */
  const PREFETCH = 4;
  /** Window presets on the displayed 0-255 scale of the server's rendering (window width, level). */
  const PRESETS = { lung: { w: 160, l: 80 }, bone: { w: 120, l: 190 }, soft: { w: 200, l: 140 } };
  const FULL = { w: 256, l: 128 };

  const $ = (id) => document.getElementById(id);
  const state = {
    auth: 'off',
    reviewer: '',
    page: 1,
    total: 0,
    items: [],
    index: -1,
    reason: '',
    prefix: '',
    busy: false,
    undo: [],
    /** Uploads labeled on this page (written or being written): never shown again unless undone. */
    labeled: new Set(),
    inflight: 0,
    /** Label writes started or settled so far: a worklist answer asked for before one of them may not count it. */
    labelEvents: 0,
    cases: new Map(),
    current: null,
    view: { zoom: 1, x: 0, y: 0, w: FULL.w, l: FULL.l, invert: false, input: false },
  };

  // ---------- server ----------

  function encodeName(name) {
    return name.split('/').map(encodeURIComponent).join('/');
  }

  async function api(path, init) {
    const headers = { accept: 'application/json' };
    if (state.auth === 'local' && state.reviewer !== '') headers['x-triage-reviewer'] = state.reviewer;
    let body;
    if (init && init.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['x-triage-review'] = '1';
      body = JSON.stringify(
        state.auth === 'local' ? Object.assign({ reviewer: state.reviewer }, init.body) : init.body,
      );
    }
    const res = await fetch(BASE + path, {
      method: init && init.method ? init.method : 'GET',
      headers,
      body,
      credentials: 'same-origin',
    });
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = { error: 'HTTP ' + res.status };
    }
    if (res.status === 401 && data && typeof data.login === 'string') {
      window.location.assign(data.login);
    }
    return { status: res.status, ok: res.ok, data };
  }

  function imageUrl(name, sha, view) {
    return (
      BASE + 'images/' + encodeName(name) + '?view=' + view + '&v=' + encodeURIComponent(String(sha || '').slice(0, 16))
    );
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error('image did not load: ' + url));
      img.src = url;
    });
  }

  function grayOf(img) {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
    const g = new Uint8Array(c.width * c.height);
    for (let i = 0; i < g.length; i++) g[i] = rgba[i * 4];
    return { width: c.width, height: c.height, data: g };
  }

  /** The case's record and both images, fetched once and kept for the page's life. */
  function loadCase(item) {
    let p = state.cases.get(item.upload);
    if (p === undefined) {
      p = (async () => {
        const r = await api('cases/' + encodeName(item.upload));
        if (!r.ok) throw new Error(r.data && r.data.error ? r.data.error : 'HTTP ' + r.status);
        const d = r.data;
        const [original, input] = await Promise.all([
          loadImage(imageUrl(d.upload, d.sha256, 'original')),
          loadImage(imageUrl(d.upload, d.sha256, 'input')),
        ]);
        return { detail: d, original, input, gray: { original: null, input: null } };
      })();
      p.catch(() => state.cases.delete(item.upload));
      state.cases.set(item.upload, p);
    }
    return p;
  }

  // ---------- worklist ----------

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function pct(p) {
    return (p * 100).toFixed(1) + '%';
  }

  /** Two numbers with as few decimals (2 to 6) as show which is larger. */
  function pair(a, b) {
    let d = 2;
    while (d < 6 && a !== b && a.toFixed(d) === b.toFixed(d)) d++;
    return [a.toFixed(d), b.toFixed(d)];
  }

  /**
   * Why an image was flagged, as the rule its model applied: a screening model's positive-class
   * probability against its threshold ("PNEUMONIA 0.87 ≥ threshold 0.42"), else the top-class
   * confidence against the selective threshold. `rule` is a worklist item's or a prediction's
   * (undefined for records written before they named their threshold).
   */
  function ruleText(rule) {
    if (rule === undefined) return null;
    if (rule.kind === 'screening') {
      const [p, t] = pair(rule.probability, rule.threshold);
      return rule.positiveClass + ' ' + p + (rule.probability >= rule.threshold ? ' ≥ ' : ' < ') + 'threshold ' + t;
    }
    if (rule.threshold === null) return 'confidence ' + rule.confidence.toFixed(2) + ', every prediction reviewed';
    const [c, t] = pair(rule.confidence, rule.threshold);
    return 'confidence ' + c + (rule.confidence < rule.threshold ? ' < ' : ' ≥ ') + 'threshold ' + t;
  }

  function itemRule(item) {
    if (item.screening !== undefined) return { kind: 'screening', ...item.screening };
    if (item.confidenceThreshold !== undefined && item.confidence !== undefined)
      return { kind: 'confidence', confidence: item.confidence, threshold: item.confidenceThreshold };
    return undefined;
  }

  function predictionRule(p) {
    const t = p.threshold;
    if (t === undefined) return undefined;
    if (t.kind === 'screening')
      return {
        kind: 'screening',
        positiveClass: t.positiveClass,
        probability: p.probabilities[t.positiveClass] || 0,
        threshold: t.value,
      };
    return { kind: 'confidence', confidence: p.confidence, threshold: t.value };
  }

  function worklistQuery() {
    const q = new URLSearchParams({ page: String(state.page), pageSize: String(PAGE_SIZE) });
    if (state.reason !== '') q.set('reason', state.reason);
    if (state.prefix !== '') q.set('prefix', state.prefix);
    return q;
  }

  async function loadWorklist(keepName) {
    const r = await api('worklist?' + worklistQuery().toString());
    if (!r.ok) {
      message(r.data && r.data.error ? r.data.error : 'The worklist could not be loaded.');
      return;
    }
    const w = r.data;
    if (w.items.length === 0 && state.page > 1 && w.total > 0) {
      state.page = Math.max(1, Math.ceil(w.total / PAGE_SIZE));
      return loadWorklist(keepName);
    }
    state.items = w.items.filter((i) => !state.labeled.has(i.upload));
    state.total = w.total;
    renderReasons(w.reasonCounts);
    renderWorklist();
    let idx = keepName ? state.items.findIndex((i) => i.upload === keepName) : -1;
    if (idx < 0) idx = state.items.length > 0 ? 0 : -1;
    await show(idx);
  }

  function renderReasons(counts) {
    const sel = $('filter-reason');
    const keep = state.reason;
    while (sel.options.length > 1) sel.remove(1);
    const names = Object.keys(counts).sort();
    if (keep !== '' && !names.includes(keep)) names.push(keep);
    for (const n of names) {
      const o = el('option', n + ' (' + (counts[n] || 0) + ')');
      o.value = n;
      sel.appendChild(o);
    }
    sel.value = keep;
  }

  function renderRemaining() {
    const filtered = state.reason !== '' || state.prefix !== '';
    $('remaining').textContent =
      state.total +
      (state.total === 1 ? ' image waits' : ' images wait') +
      ' for review' +
      (filtered ? ' (filtered)' : '');
    const pages = Math.max(1, Math.ceil(state.total / PAGE_SIZE));
    $('page-info').textContent = 'Page ' + state.page + ' of ' + pages;
    $('page-prev').disabled = state.page <= 1;
    $('page-next').disabled = state.page >= pages;
  }

  function row(item) {
    const tr = el('tr');
    tr.dataset.upload = item.upload;
    const c1 = el('td');
    const b = el('button', null, 'open-case');
    b.type = 'button';
    const img = el('img');
    img.alt = '';
    img.loading = 'lazy';
    img.src = imageUrl(item.upload, item.sha256, 'input');
    b.appendChild(img);
    b.appendChild(el('span', item.upload));
    b.addEventListener('click', () => void show(state.items.findIndex((x) => x.upload === item.upload)));
    c1.appendChild(b);
    const c2 = el('td');
    if (item.topClass !== undefined) {
      c2.appendChild(el('strong', item.topClass + ' ' + pct(item.confidence || 0)));
      const rest = (item.top || []).filter((t) => t.class !== item.topClass);
      if (rest.length > 0) {
        c2.appendChild(el('br'));
        c2.appendChild(el('span', rest.map((t) => t.class + ' ' + pct(t.probability)).join(', '), 'prob'));
      }
    } else c2.textContent = '–';
    const c3 = el('td');
    for (const r of item.reasons) c3.appendChild(el('span', r, 'reason ' + r));
    const rule = ruleText(itemRule(item));
    if (rule !== null) {
      c3.appendChild(el('br'));
      c3.appendChild(el('span', rule, 'prob rule'));
    }
    const c4 = el('td');
    c4.appendChild(
      el(
        'span',
        item.uploadedAt
          ? new Date(item.uploadedAt).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' })
          : '–',
      ),
    );
    if (item.batch) {
      c4.appendChild(el('br'));
      c4.appendChild(el('span', item.batch, 'prob'));
    }
    tr.append(c1, c2, c3, c4);
    return tr;
  }

  function renderWorklist() {
    $('worklist-body').replaceChildren(...state.items.map(row));
    renderRemaining();
  }

  /**
   * Near the end of the loaded items, the next ones are fetched (labeled ones leave the server's
   * pages, so the same page brings the following items) and appended: labelling never waits for
   * a page to load.
   */
  let topping = null;
  function topUp() {
    if (topping !== null) return topping;
    topping = (async () => {
      const events = state.labelEvents;
      const r = await api('worklist?' + worklistQuery().toString());
      if (!r.ok) return;
      const have = new Set(state.items.map((i) => i.upload));
      for (const it of r.data.items) {
        if (have.has(it.upload) || state.labeled.has(it.upload)) continue;
        state.items.push(it);
        $('worklist-body').appendChild(row(it));
      }
      // The server's count is taken only if no label was written meanwhile: whether it counts
      // such a label is unknown, and the count kept here already does.
      if (state.labelEvents === events) state.total = Math.max(state.items.length, r.data.total - state.inflight);
      renderRemaining();
      markCurrent();
    })().finally(() => {
      topping = null;
    });
    return topping;
  }

  function markCurrent() {
    for (const tr of $('worklist-body').children) {
      const on = state.index >= 0 && tr.dataset.upload === (state.items[state.index] || {}).upload;
      tr.classList.toggle('current', on);
      if (on) tr.setAttribute('aria-current', 'true');
      else tr.removeAttribute('aria-current');
    }
  }

  // ---------- viewer ----------

  const canvas = $('main-canvas');
  const stage = $('stage');

  function fit() {
    const c = state.current;
    if (!c) return;
    const img = state.view.input ? c.input : c.original;
    const sw = stage.clientWidth;
    const sh = stage.clientHeight;
    const z = Math.min(sw / img.naturalWidth, sh / img.naturalHeight);
    state.view.zoom = z;
    state.view.x = (sw - img.naturalWidth * z) / 2;
    state.view.y = (sh - img.naturalHeight * z) / 2;
    stage.classList.toggle('pixelated', z > 2);
  }

  function place() {
    const v = state.view;
    canvas.style.transform = 'translate(' + v.x + 'px,' + v.y + 'px) scale(' + v.zoom + ')';
    stage.classList.toggle('pixelated', v.zoom > 2);
  }

  function paint() {
    const c = state.current;
    if (!c) return;
    const which = state.view.input ? 'input' : 'original';
    if (c.gray[which] === null) c.gray[which] = grayOf(which === 'input' ? c.input : c.original);
    const g = c.gray[which];
    if (canvas.width !== g.width || canvas.height !== g.height) {
      canvas.width = g.width;
      canvas.height = g.height;
    }
    const ctx = canvas.getContext('2d');
    const out = ctx.createImageData(g.width, g.height);
    const lut = new Uint8ClampedArray(256);
    const w = Math.max(1, state.view.w);
    const lo = state.view.l - w / 2;
    for (let v = 0; v < 256; v++) {
      const x = ((v - lo) / w) * 255;
      lut[v] = state.view.invert ? 255 - x : x;
    }
    const d = out.data;
    const src = g.data;
    for (let i = 0, j = 0; i < src.length; i++, j += 4) {
      const y = lut[src[i]];
      d[j] = y;
      d[j + 1] = y;
      d[j + 2] = y;
      d[j + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
    $('wl').textContent =
      'W ' +
      Math.round(state.view.w) +
      ' / L ' +
      Math.round(state.view.l) +
      (state.view.invert ? ', inverted' : '') +
      ', zoom ' +
      state.view.zoom.toFixed(2) +
      'x';
    canvas.setAttribute(
      'aria-label',
      (state.view.input ? 'Model input of ' : 'Image ') +
        c.detail.upload +
        ', window ' +
        Math.round(state.view.w) +
        ', level ' +
        Math.round(state.view.l),
    );
    $('invert').setAttribute('aria-pressed', String(state.view.invert));
    $('toggle-input').setAttribute('aria-pressed', String(state.view.input));
  }

  function setWindow(w, l) {
    state.view.w = Math.min(512, Math.max(1, w));
    state.view.l = Math.min(255, Math.max(0, l));
    paint();
  }

  function resetView() {
    state.view.w = FULL.w;
    state.view.l = FULL.l;
    state.view.invert = false;
    fit();
    place();
    paint();
  }

  function zoomBy(f, cx, cy) {
    const v = state.view;
    const px = cx === undefined ? stage.clientWidth / 2 : cx;
    const py = cy === undefined ? stage.clientHeight / 2 : cy;
    const z = Math.min(40, Math.max(0.05, v.zoom * f));
    v.x = px - ((px - v.x) * z) / v.zoom;
    v.y = py - ((py - v.y) * z) / v.zoom;
    v.zoom = z;
    place();
    paint();
  }

  let drag = null;
  stage.addEventListener('pointerdown', (e) => {
    if (!state.current) return;
    drag = {
      mode: e.button === 2 || e.button === 1 || e.shiftKey ? 'pan' : 'wl',
      x: e.clientX,
      y: e.clientY,
      w: state.view.w,
      l: state.view.l,
      vx: state.view.x,
      vy: state.view.y,
    };
    stage.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  stage.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (drag.mode === 'pan') {
      state.view.x = drag.vx + dx;
      state.view.y = drag.vy + dy;
      place();
    } else {
      setWindow(drag.w + dx, drag.l - dy);
    }
  });
  const endDrag = () => {
    drag = null;
  };
  stage.addEventListener('pointerup', endDrag);
  stage.addEventListener('pointercancel', endDrag);
  stage.addEventListener('contextmenu', (e) => e.preventDefault());
  stage.addEventListener(
    'wheel',
    (e) => {
      if (!state.current) return;
      e.preventDefault();
      const r = stage.getBoundingClientRect();
      zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - r.left, e.clientY - r.top);
    },
    { passive: false },
  );

  function fact(dl, term, value, cls) {
    dl.appendChild(el('dt', term));
    dl.appendChild(el('dd', value, cls));
  }

  function renderCase(c) {
    const d = c.detail;
    $('case-title').textContent = d.upload;
    const p = d.prediction;
    const pred = $('prediction');
    pred.replaceChildren();
    if (p) {
      const probs = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]);
      fact(pred, 'Predicted', p.topClass + ' ' + pct(p.confidence));
      fact(
        pred,
        'Classes',
        probs
          .slice(0, 5)
          .map((e) => e[0] + ' ' + pct(e[1]))
          .join(', '),
      );
      fact(pred, 'Reasons', p.review.reasons.join(', ') || 'none');
      const rule = ruleText(predictionRule(p));
      if (rule !== null) fact(pred, 'Flag rule', rule, 'rule');
      fact(pred, 'Priority', p.review.priority.toFixed(3));
      fact(pred, 'Model', p.model.version + ' (' + p.model.architecture + ')');
      fact(pred, 'Scored', new Date(p.time).toLocaleString());
    } else fact(pred, 'Predicted', 'not scored yet');
    const facts = $('image-facts');
    facts.replaceChildren();
    const pre = d.preprocessing;
    fact(facts, 'Source', pre.format + ', ' + pre.width + ' x ' + pre.height + ', ' + pre.bytes + ' bytes');
    fact(facts, 'Profile', pre.profile + ' ' + pre.profileVersion);
    const warnings = pre.quality.warnings.slice();
    if (pre.quality.blank) warnings.unshift('blank');
    if (pre.quality.nearConstant) warnings.unshift('near-constant');
    fact(
      facts,
      'Quality',
      warnings.length > 0 ? warnings.join(', ') : 'no warnings',
      warnings.length > 0 ? 'warning' : '',
    );
    if (pre.dicom)
      fact(
        facts,
        'DICOM',
        [
          pre.dicom.modality,
          pre.dicom.photometricInterpretation,
          pre.dicom.transferSyntaxName || pre.dicom.transferSyntax,
        ]
          .filter((x) => x)
          .join(', '),
      );
    renderHistory(d.label);
    renderButtons(d);
    $('side-image').src = state.view.input ? c.original.src : c.input.src;
    $('side-image').alt = state.view.input
      ? 'The original upload, as rendered by the server'
      : 'What the model saw (preprocessed input)';
    $('side-caption').textContent = state.view.input
      ? 'Original'
      : 'Model input (' + c.input.naturalWidth + ' x ' + c.input.naturalHeight + ')';
  }

  function renderHistory(label) {
    const ol = $('history');
    ol.replaceChildren();
    if (!label) {
      ol.appendChild(el('li', 'not labeled yet'));
      return;
    }
    for (const e of [label].concat(label.history || [])) {
      ol.appendChild(
        el(
          'li',
          e.class +
            ' by ' +
            e.labeledBy +
            ', ' +
            new Date(e.labeledAt).toLocaleString() +
            (e.note ? ': ' + e.note : ''),
        ),
      );
    }
  }

  function renderButtons(d) {
    const box = $('label-buttons');
    box.replaceChildren();
    for (const cls of d.classNames) {
      const b = el('button');
      b.type = 'button';
      b.dataset.class = cls;
      const key = d.keys[cls];
      if (key) b.appendChild(el('kbd', key));
      b.appendChild(document.createTextNode(cls));
      b.setAttribute('aria-keyshortcuts', key || '');
      if (d.prediction && d.prediction.topClass === cls) b.classList.add('predicted');
      b.addEventListener('click', () => void label(cls));
      box.appendChild(b);
    }
  }

  async function show(idx) {
    state.index = idx;
    markCurrent();
    const item = state.items[idx];
    if (!item) {
      state.current = null;
      $('case-title').textContent = state.total === 0 ? 'Nothing waits for review' : 'No image selected';
      canvas.width = 0;
      canvas.height = 0;
      $('viewer').dataset.shownCase = '';
      return;
    }
    let c;
    try {
      c = await loadCase(item);
    } catch (e) {
      message(String(e.message || e));
      return;
    }
    if (state.items[state.index] !== item) return; // moved on meanwhile
    state.current = c;
    state.view.w = FULL.w;
    state.view.l = FULL.l;
    state.view.invert = false;
    renderCase(c);
    fit();
    place();
    paint();
    $('viewer').dataset.shownCase = item.upload;
    for (let k = 1; k <= PREFETCH; k++) {
      const next = state.items[idx + k];
      if (next) loadCase(next).catch(() => undefined);
    }
  }

  // ---------- labelling ----------

  function message(text) {
    $('message').textContent = text;
  }

  /**
   * Labels the current image and shows the next one at once; the label is written meanwhile
   * through the labels API. A write that fails puts the image back in the list and says why.
   */
  async function label(cls) {
    const item = state.items[state.index];
    if (!item || state.busy || !state.current || state.current.detail.upload !== item.upload) return;
    const idx = state.index;
    const note = $('note').value.trim();
    const entry = { item, cls, labeledAt: null, write: null };
    state.labeled.add(item.upload);
    state.inflight++;
    state.labelEvents++;
    entry.write = api('labels/' + encodeName(item.upload), {
      method: 'POST',
      body: note !== '' ? { class: cls, note } : { class: cls },
    }).then(
      (r) => {
        state.inflight--;
        state.labelEvents++;
        if (r.ok) {
          entry.labeledAt = r.data.labeledAt;
          message('Labeled ' + item.upload + ' as ' + cls + '.');
          return true;
        }
        failed(entry, r.data && r.data.error ? r.data.error : 'HTTP ' + r.status);
        return false;
      },
      (e) => {
        state.inflight--;
        state.labelEvents++;
        failed(entry, String(e));
        return false;
      },
    );
    state.undo.push(entry);
    $('undo').disabled = false;
    $('note').value = '';
    state.cases.delete(item.upload);
    state.items.splice(idx, 1);
    for (const tr of Array.from($('worklist-body').children)) if (tr.dataset.upload === item.upload) tr.remove();
    state.total = Math.max(0, state.total - 1);
    renderRemaining();
    if (state.items.length - idx <= 5) void topUp();
    if (state.items.length === 0) {
      await entry.write;
      await topUp();
    }
    await show(Math.min(idx, state.items.length - 1));
  }

  function failed(entry, why) {
    const i = state.undo.indexOf(entry);
    if (i >= 0) state.undo.splice(i, 1);
    $('undo').disabled = state.undo.length === 0;
    state.labeled.delete(entry.item.upload);
    state.items.splice(Math.min(state.index + 1, state.items.length), 0, entry.item);
    state.total++;
    renderWorklist();
    markCurrent();
    message(
      'The label ' + entry.cls + ' of ' + entry.item.upload + ' was not saved: ' + why + ' It is back in the list.',
    );
  }

  async function undo() {
    const last = state.undo[state.undo.length - 1];
    if (!last || state.busy) return;
    state.busy = true;
    try {
      if (!(await last.write)) return;
      const r = await api('undo/' + encodeName(last.item.upload), {
        method: 'POST',
        body: { labeledAt: last.labeledAt },
      });
      if (!r.ok) {
        message(r.data && r.data.error ? r.data.error : 'Undo failed (HTTP ' + r.status + ').');
        return;
      }
      state.undo.pop();
      $('undo').disabled = state.undo.length === 0;
      state.labeled.delete(last.item.upload);
      state.cases.delete(last.item.upload);
      message('Undid the label ' + last.cls + ' of ' + last.item.upload + '.');
      await loadWorklist(last.item.upload);
    } finally {
      state.busy = false;
    }
  }

  // ---------- status ----------

  function rowTable(caption, entries) {
    const t = el('table');
    t.appendChild(el('caption', caption));
    for (const [k, v] of entries) {
      const th = el('th', k);
      th.setAttribute('scope', 'row');
      const tr = el('tr');
      tr.append(th, el('td', v));
      t.appendChild(tr);
    }
    return t;
  }

  async function loadStatus() {
    const box = $('status-body');
    const r = await api('status');
    box.replaceChildren();
    if (!r.ok) {
      box.appendChild(el('p', r.data && r.data.error ? r.data.error : 'Status unavailable.'));
      return;
    }
    const s = r.data;
    const grid = el('div', null, 'status-grid');
    const counts = rowTable('Blobs per container', Object.entries(s.status.containers));
    const work = rowTable('Work', [
      ['uploads', s.status.uploads],
      ['waiting for preprocessing', s.status.pendingPreprocess],
      ['waiting for a score', s.status.pendingScore],
      ['scored', s.status.predicted],
      ['flagged', s.status.flagged],
      ['rejected', s.status.rejected],
    ]);
    const model = el('div');
    model.appendChild(el('h3', 'Promoted model'));
    if (s.model) {
      const dl = el('dl', null, 'facts');
      fact(dl, 'Version', s.model.version);
      fact(dl, 'Architecture', s.model.architecture);
      fact(dl, 'Classes', s.model.classNames.join(', '));
      fact(dl, 'Trained on', s.model.trainImages + ' images');
      for (const [k, v] of Object.entries(s.model.metrics))
        fact(dl, k, typeof v === 'number' ? (Math.abs(v) <= 1 ? pct(v) : v.toFixed(3)) : String(v));
      if (s.model.screening)
        fact(dl, 'Screening', s.model.screening.positiveClass + ' flagged at p >= ' + s.model.screening.threshold);
      fact(dl, 'Promoted', s.model.promotedAt ? new Date(s.model.promotedAt).toLocaleString() : '–');
      model.appendChild(dl);
    } else model.appendChild(el('p', 'No model is promoted yet.'));
    const runs = el('div');
    runs.appendChild(el('h3', 'Recent retraining runs'));
    if (s.runs.length === 0) runs.appendChild(el('p', 'None yet.'));
    else {
      const t = el('table');
      const head = el('tr');
      for (const h of ['Run', 'State', 'Outcome', 'Why', 'Asked by', 'Started']) {
        const th = el('th', h);
        th.setAttribute('scope', 'col');
        head.appendChild(th);
      }
      t.appendChild(head);
      for (const run of s.runs) {
        const tr = el('tr');
        tr.append(
          el('td', run.runId),
          el('td', run.state),
          el('td', run.outcome || '–'),
          el('td', run.reason || '–'),
          el('td', run.requestedBy),
          el('td', new Date(run.createdAt).toLocaleString()),
        );
        t.appendChild(tr);
      }
      runs.appendChild(t);
    }
    grid.append(work, counts, model, runs);
    box.appendChild(grid);
  }

  async function retrain() {
    const r = await api('retrain', { method: 'POST', body: { force: $('retrain-force').checked } });
    $('retrain-message').textContent = r.ok
      ? 'Run ' + r.data.runId + ' started.'
      : r.data && r.data.error
        ? r.data.error
        : 'HTTP ' + r.status;
    if ($('status-panel').open) await loadStatus();
  }

  // ---------- keyboard ----------

  function classForKey(key) {
    const c = state.current;
    if (!c) return undefined;
    const k = key.toUpperCase();
    return c.detail.classNames.find((n) => String(c.detail.keys[n]).toUpperCase() === k);
  }

  document.addEventListener('keydown', (e) => {
    const t = e.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
    if (typing) {
      if (e.key === 'Escape') t.blur();
      return;
    }
    if ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === 'z' || e.key === 'Z')) {
      e.preventDefault();
      void undo();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.shiftKey) {
      const action = {
        KeyL: () => setWindow(PRESETS.lung.w, PRESETS.lung.l),
        KeyB: () => setWindow(PRESETS.bone.w, PRESETS.bone.l),
        KeyS: () => setWindow(PRESETS.soft.w, PRESETS.soft.l),
        KeyI: () => toggleInvert(),
        KeyR: () => resetView(),
        KeyT: () => toggleInput(),
      }[e.code];
      if (action) {
        e.preventDefault();
        action();
        return;
      }
    }
    if (e.key === '?') return void toggleHelp();
    if (e.key === 'PageDown') {
      e.preventDefault();
      return void show(Math.min(state.items.length - 1, state.index + 1));
    }
    if (e.key === 'PageUp') {
      e.preventDefault();
      return void show(Math.max(0, state.index - 1));
    }
    if (e.key === '+' || e.key === '=') return void zoomBy(1.25);
    if (e.key === '-') return void zoomBy(0.8);
    const pan = { ArrowLeft: [40, 0], ArrowRight: [-40, 0], ArrowUp: [0, 40], ArrowDown: [0, -40] }[e.key];
    if (pan && state.current && !(t instanceof HTMLButtonElement && t.closest('.pager'))) {
      e.preventDefault();
      state.view.x += pan[0];
      state.view.y += pan[1];
      place();
      return;
    }
    if (!e.shiftKey && e.key.length === 1) {
      const cls = classForKey(e.key);
      if (cls !== undefined) {
        e.preventDefault();
        void label(cls);
      }
    }
  });

  function toggleInvert() {
    state.view.invert = !state.view.invert;
    paint();
  }

  function toggleInput() {
    state.view.input = !state.view.input;
    if (state.current) {
      renderCase(state.current);
      fit();
      place();
      paint();
    }
  }

  function toggleHelp() {
    const h = $('help');
    h.hidden = !h.hidden;
    $('help-button').setAttribute('aria-expanded', String(!h.hidden));
  }

  // ---------- wiring ----------

  for (const b of document.querySelectorAll('[data-preset]')) {
    b.addEventListener('click', () => {
      const p = PRESETS[b.dataset.preset];
      setWindow(p.w, p.l);
    });
  }
  $('invert').addEventListener('click', toggleInvert);
  $('reset').addEventListener('click', resetView);
  $('zoom-in').addEventListener('click', () => zoomBy(1.25));
  $('zoom-out').addEventListener('click', () => zoomBy(0.8));
  $('toggle-input').addEventListener('click', toggleInput);
  $('undo').addEventListener('click', () => void undo());
  $('skip').addEventListener('click', () => void show(Math.min(state.items.length - 1, state.index + 1)));
  $('help-button').addEventListener('click', toggleHelp);
  $('page-prev').addEventListener('click', () => {
    state.page = Math.max(1, state.page - 1);
    void loadWorklist();
  });
  $('page-next').addEventListener('click', () => {
    state.page += 1;
    void loadWorklist();
  });
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    state.reason = $('filter-reason').value;
    state.prefix = $('filter-prefix').value.trim();
    state.page = 1;
    void loadWorklist();
  });
  $('status-panel').addEventListener('toggle', () => {
    if ($('status-panel').open) void loadStatus();
  });
  $('retrain').addEventListener('click', () => void retrain());
  window.addEventListener('resize', () => {
    fit();
    place();
  });

  async function start() {
    const stored = window.localStorage.getItem('triage-reviewer') || '';
    state.reviewer = stored;
    state.auth = 'local';
    const me = await api('me');
    if (!me.ok) {
      $('remaining').textContent =
        me.data && me.data.error ? me.data.error : 'The review page is not available (HTTP ' + me.status + ').';
      return;
    }
    state.auth = me.data.auth;
    if (state.auth !== 'local') state.reviewer = '';
    $('who-name').textContent = me.data.reviewer;
    if (state.auth === 'local') {
      $('who-name').hidden = true;
      $('who-label').hidden = true;
      $('who-edit').hidden = false;
      $('who-input').value = state.reviewer !== '' ? state.reviewer : me.data.reviewer;
      $('who-input').addEventListener('change', () => {
        state.reviewer = $('who-input').value.trim();
        window.localStorage.setItem('triage-reviewer', state.reviewer);
      });
    }
    await loadWorklist();
  }

  void start();
})();
