"""How the studio looks and answers keys: its CSS and the one piece of JavaScript every page runs.

Sprites are tiny (16-64 px). Wherever one is shown (an element inside `.pixelated`), the script enlarges it by
the largest whole number that fits its box, with nearest-neighbour sampling, so a 12x10 sprite is not a speck
and no pixel is smeared or drawn at 1.5x its neighbour's size. The file behind it stays the native PNG, so a
download is the sprite itself.
"""

CSS = """
.pixelated img, .pixelated canvas { image-rendering: pixelated; image-rendering: crisp-edges; }
.pixelated img[data-scale] { object-fit: fill !important; max-width: none !important; max-height: none !important; }
.pixelated .thumbnail-item { aspect-ratio: 1 / 1; max-width: 360px; max-height: 360px; margin: 0 auto;
                             display: flex; align-items: center; justify-content: center; }
#demo-banner { border: 2px solid #d97706; border-radius: 8px; padding: 8px 14px; background: #fff7ed; color: #7c2d12; }
.sticky-results { position: sticky; top: 8px; align-self: flex-start; }
.slot-label { font-weight: 700; font-size: 1.4em; text-align: center; }
"""

# Keyboard shortcuts for the tab that is showing (hidden tabs' buttons are skipped), ignored while typing.
# Compare: 1/a = A better, 2/b = B better, t = tie, x = both bad, n = next battle. Dataset: j/k = next/previous.
JS = """
() => {
  const keys = {'1': 'vote-a', 'a': 'vote-a', '2': 'vote-b', 'b': 'vote-b', 't': 'vote-tie', 'x': 'vote-bad',
                'n': 'next-battle', 'j': 'ds-next', 'k': 'ds-prev'};
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    const el = document.getElementById(keys[e.key.toLowerCase()]);
    if (el && el.offsetParent !== null) { el.click(); e.preventDefault(); }
  });

  // Whole-number enlargement of every sprite shown inside a .pixelated element (see tabs/look.py).
  const fit = (img) => {
    const w = img.naturalWidth, h = img.naturalHeight, box = img.parentElement;
    const holder = img.closest('.pixelated');
    if (!w || !h || !box || !holder) return;
    // the box the sprite may fill: its frame, never wider than the component, never taller than --sprite-max-h
    const maxH = parseFloat(getComputedStyle(holder).getPropertyValue('--sprite-max-h')) || 384;
    const bw = Math.min(box.clientWidth || holder.clientWidth, holder.clientWidth);
    const bh = Math.min(Math.max(box.clientHeight, bw), maxH);
    if (!bw) return;
    const k = Math.max(1, Math.floor(Math.min(bw / w, bh / h)));
    if (img.dataset.scale === String(k) && img.style.width === w * k + 'px') return;
    img.dataset.scale = String(k);
    img.style.width = w * k + 'px';
    img.style.height = h * k + 'px';
  };
  const fitAll = () => document.querySelectorAll('.pixelated img').forEach((img) => {
    if (img.complete && img.naturalWidth) fit(img);
    if (!img.dataset.watched) {  // every later load of this element (a new src) is fitted again
      img.dataset.watched = '1';
      img.addEventListener('load', () => fit(img));
    }
  });
  new MutationObserver(fitAll).observe(document.body, {childList: true, subtree: true, attributes: true,
                                                       attributeFilter: ['src']});
  window.addEventListener('resize', () => document.querySelectorAll('.pixelated img').forEach(fit));
}
"""
