// Critique card DOM builders: plain functions from a node's UI payload to DOM elements.
//
// Every value shown comes from the payload the node sent (models/cards.py: the same parsed numbers
// its outputs carry, the names of N/A and unreadable scores in `labels`, the loop's prompt diffs);
// nothing is scored, named, diffed or re-aggregated here. Critique text is model output, so every
// string goes in through textContent — never innerHTML — and cannot inject markup.

const STATUS_OK = "ok";
const STATUS_NA = "n/a";
const STATUS_MISSING = "missing";

/** Element with optional class and text (text is set with textContent: never parsed as HTML). */
export function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
}

function append(parent, ...children) {
    for (const child of children) if (child) parent.appendChild(child);
    return parent;
}

/** A 1–4 score as text: the number, or the name the payload's `labels` give its status. */
export function scoreText(score, status, labels) {
    if (status === STATUS_OK && typeof score === "number") return score.toFixed(2);
    const name = status === STATUS_OK ? STATUS_MISSING : status;
    return (labels || {})[name] ?? name;
}

/** Overall reward (0–1) as text; null (the node could not aggregate) gets the payload's name. */
export function overallText(overall, labels) {
    return typeof overall === "number" ? overall.toFixed(3) : (labels || {}).overall ?? STATUS_MISSING;
}

function level(score) {  // colour band only; 4 = no problem, 3 = minor, 2 = clear, 1 = severe
    return score >= 3 ? "good" : score >= 2 ? "fair" : "poor";
}

/** A horizontal bar for a 1–4 score (N/A and unreadable get an empty, labelled track). */
function scoreBar(score, status) {
    const bar = el("div", "rr-bar");
    const fill = append(bar, el("div", "rr-bar-fill")).lastChild;
    if (status === STATUS_OK && typeof score === "number") {
        fill.style.width = `${Math.max(0, Math.min(1, (score - 1) / 3)) * 100}%`;
        fill.dataset.level = level(score);
    } else {
        fill.style.width = "0%";
        bar.classList.add(status === STATUS_NA ? "rr-bar-na" : "rr-bar-missing");
    }
    return bar;
}

function overallBar(overall) {
    const bar = el("div", "rr-bar rr-bar-overall");
    const fill = append(bar, el("div", "rr-bar-fill")).lastChild;
    if (typeof overall === "number") {
        fill.style.width = `${Math.max(0, Math.min(1, overall)) * 100}%`;
        fill.dataset.level = level(1 + 3 * overall);
    } else {
        fill.style.width = "0%";
        bar.classList.add("rr-bar-missing");
    }
    return bar;
}

/** Copy-to-clipboard button; falls back to a hidden textarea where the Clipboard API is refused. */
export function copyButton(text, label = "Copy") {
    const button = el("button", "rr-copy", label);
    button.type = "button";
    button.title = "Copy to the clipboard";
    button.addEventListener("click", async (event) => {
        event.stopPropagation();
        let ok = false;
        try {
            await navigator.clipboard.writeText(text);
            ok = true;
        } catch {
            const area = el("textarea");
            area.value = text;
            area.style.position = "fixed";
            area.style.opacity = "0";
            document.body.appendChild(area);
            area.select();
            try { ok = document.execCommand("copy"); } catch { ok = false; }
            area.remove();
        }
        button.textContent = ok ? "Copied" : "Copy failed";
        button.dataset.copied = ok ? "1" : "0";
        setTimeout(() => { button.textContent = label; }, 1500);
    });
    return button;
}

/** The parser's warnings; for an answer it could not fully read, the node's one line of advice and
 *  what the critic actually wrote (collapsed), so an unreadable score is never a dead end. */
function warningsBlock(warnings, advice, raw) {
    const hasRaw = typeof raw === "string";
    if ((!warnings || !warnings.length) && !advice && !hasRaw) return null;
    const box = el("div", "rr-warnings");
    box.setAttribute("role", "alert");
    append(box, el("div", "rr-warnings-title", "Could not read everything"));
    const list = append(box, el("ul")).lastChild;
    for (const w of warnings || []) append(list, el("li", "rr-warning", w));
    if (advice) append(box, el("div", "rr-advice", advice));
    if (hasRaw) {
        const details = append(box, el("details", "rr-raw")).lastChild;
        append(details, el("summary", null, "What the critic wrote"),
               el("pre", "rr-raw-text", raw || "(nothing)"));
    }
    return box;
}

function textSection(cls, label, text) {
    if (!text) return null;
    const section = el("div", cls);
    append(section, el("span", "rr-label", label), el("span", "rr-text", text));
    return section;
}

function justification(text) {
    if (!text) return null;
    const details = el("details", "rr-just");
    append(details, el("summary", null, "Justification"), el("div", "rr-just-text", text));
    return details;
}

/** The refined prompt with its copy button. */
function refinedBlock(text, label = "Refined prompt") {
    if (!text) return null;
    const block = el("div", "rr-refined-block");
    const head = append(block, el("div", "rr-row")).lastChild;
    append(head, el("span", "rr-label", label), copyButton(text));
    append(block, el("div", "rr-refined", text));
    return block;
}

/** One pointwise critique (Critique.to_dict() + prompt). */
export function critiqueView(c) {
    const labels = c.labels;
    const root = el("div", "rr-critique");
    root.dataset.task = c.task || "";
    append(root, warningsBlock(c.warnings, c.advice, c.raw));
    const dims = append(root, el("div", "rr-dims")).lastChild;
    for (const d of c.dimensions || []) {
        const row = append(dims, el("div", "rr-dim")).lastChild;
        row.dataset.key = d.key;
        row.dataset.status = d.status;
        const head = append(row, el("div", "rr-row")).lastChild;
        append(head, el("span", "rr-dim-title", d.title), el("span", "rr-dim-score", scoreText(d.score, d.status, labels)));
        if (d.status !== STATUS_OK && d.raw_score) head.title = `The critic wrote: ${d.raw_score}`;
        append(row, scoreBar(d.score, d.status), justification(d.justification));
    }
    const overall = append(root, el("div", "rr-overall-row")).lastChild;
    const head = append(overall, el("div", "rr-row")).lastChild;
    const overallLabel = el("span", "rr-label", "Overall (0–1)");
    overallLabel.title = "The mean of the dimension scores that apply, moved from the 1–4 scale to 0–1: (mean − 1) / 3";
    append(head, overallLabel, el("span", "rr-overall", overallText(c.overall, labels)));
    append(overall, overallBar(c.overall), el("div", "rr-hint", "the 1–4 scores above, averaged and rescaled to 0–1"));
    append(root, textSection("rr-summary", "Summary", c.summary),
           textSection("rr-comments", "Refinement comments", c.refinement_comments),
           refinedBlock(c.refined_request));
    return root;
}

function cardShell(kind, title) {
    const card = el("div", "rr-card");
    card.dataset.rrKind = kind;
    append(card, el("div", "rr-card-title", title));
    return card;
}

/** A small picture of the judged image, so the card says which image it is about. */
function judgedThumb(ref, imageUrl, alt) {
    if (!ref || !imageUrl) return null;
    const img = el("img", "rr-judged");
    img.alt = alt;
    img.src = imageUrl(ref);
    img.dataset.filename = ref.filename;
    return img;
}

/** RR_CritiqueImage / RR_CritiqueEdit: one section per critiqued image, with its thumbnail. */
export function renderCritiques(list, images, imageUrl) {
    const card = cardShell("critique", list.length > 1 ? `Critique · ${list.length} images` : "Critique");
    list.forEach((c, i) => {
        const head = el("div", "rr-critique-head");
        append(head, judgedThumb((images || [])[i], imageUrl, `judged image ${i + 1}`),
               list.length > 1 ? el("div", "rr-subtitle", `Image ${i + 1}`) : null);
        if (head.childNodes.length) append(card, head);
        append(card, critiqueView(c));
    });
    return card;
}

function winnerText(w) {
    return w === "A" || w === "B" ? `Image ${w}` : w === "tie" || w === "N/A" ? w : "undecided";
}

function totalText(t, labels) {
    return typeof t === "number" ? t.toFixed(2) : (labels || {}).overall ?? STATUS_MISSING;
}

/** RR_Compare: overall winner, totals, and the winner per dimension. */
export function renderCompare(list, images, imageUrl) {
    const card = cardShell("compare", "Compare A / B");
    list.forEach((p, n) => {
        const root = append(card, el("div", "rr-compare")).lastChild;
        root.dataset.winner = p.winner;
        append(root, warningsBlock(p.warnings, p.advice, p.raw));
        const refs = (images || []).slice(2 * n, 2 * n + 2);      // the node sends A then B
        if (refs.length === 2) {
            const grid = append(root, el("div", "rr-thumbs rr-compare-thumbs")).lastChild;
            ["A", "B"].forEach((side, i) => {
                const cell = append(grid, el("figure", "rr-thumb")).lastChild;
                cell.dataset.side = side;
                if (p.winner === side) cell.classList.add("rr-side-won");
                const img = el("img");
                img.alt = `image ${side}`;
                img.src = imageUrl(refs[i]);
                img.dataset.filename = refs[i].filename;
                append(cell, img, el("figcaption", null, `Image ${side}`));
            });
        }
        const head = append(root, el("div", "rr-row rr-compare-head")).lastChild;
        append(head, el("span", "rr-label", "Winner"), el("span", "rr-compare-winner", winnerText(p.winner)));
        const totals = append(root, el("div", "rr-row rr-totals")).lastChild;
        append(totals, el("span", "rr-label", "Total A"), el("span", "rr-total-a", totalText(p.total_a, p.labels)),
               el("span", "rr-label", "Total B"), el("span", "rr-total-b", totalText(p.total_b, p.labels)));
        if (p.decision) {   // which rule decided, and the scores it had to fill in
            const rule = append(root, el("div", "rr-row rr-decision")).lastChild;
            rule.title = (p.decision.filled || []).join("\n");
            append(rule, el("span", "rr-label", "Rule"), el("span", "rr-decision-rule", p.decision.rule));
        }
        for (const d of p.dimensions || []) {
            const row = append(root, el("div", "rr-pair-dim")).lastChild;
            row.dataset.key = d.key;
            row.dataset.winner = d.winner;
            const top = append(row, el("div", "rr-row")).lastChild;
            append(top, el("span", "rr-dim-title", d.title),
                   el("span", `rr-winner rr-winner-${d.winner === "A" || d.winner === "B" ? d.winner : "none"}`,
                      winnerText(d.winner)));
            for (const side of ["a", "b"]) {
                const s = d[side] || {status: STATUS_MISSING};
                const line = append(row, el("div", `rr-side rr-side-${side}`)).lastChild;
                if (d.winner === side.toUpperCase()) line.classList.add("rr-side-won");
                append(line, el("span", "rr-side-label", side.toUpperCase()), scoreBar(s.score, s.status),
                       el("span", `rr-score-${side}`, scoreText(s.score, s.status, p.labels)));
            }
            append(row, justification(d.justification));
        }
        append(root, textSection("rr-summary", "Summary", p.summary));
    });
    return card;
}

/** RR_Rank: thumbnails in the order the node sorted them (best first), each with its critique. */
export function renderRank(list, images, imageUrl) {
    const pairwise = list.some((r) => r.mode === "pairwise");
    const card = cardShell("rank", pairwise ? "Ranked by pairwise tournament" : "Ranked candidates");
    let offset = 0;
    for (const r of list) {
        const rows = r.rows || [];
        if (r.clear_best === false) {
            append(card, el("div", "rr-note rr-rank-tie",
                            "No single best: the top scores tie (or could not be read), so the order keeps the input order."));
        }
        const grid = append(card, el("div", "rr-thumbs rr-rank-thumbs")).lastChild;
        if (r.clear_best !== false) grid.classList.add("rr-has-best");
        const details = el("div", "rr-rank-details");
        rows.forEach((row, i) => {
            const crit = (r.critiques || [])[i];
            const ref = images ? images[offset + i] : null;
            const cell = append(grid, el("figure", "rr-thumb")).lastChild;
            cell.dataset.rank = row.rank;
            cell.dataset.index = row.index;
            if (ref) {
                const img = el("img");
                img.alt = `rank ${row.rank}, input ${row.index}`;
                img.src = imageUrl(ref);
                img.dataset.filename = ref.filename;
                append(cell, img);
            }
            const cap = append(cell, el("figcaption")).lastChild;
            append(cap, el("span", "rr-thumb-rank", `#${row.rank}`),
                   el("span", "rr-thumb-index", `input ${row.index}`));
            if (row.wins != null) {   // pairwise tournament: the bracket's wins and the Bradley-Terry score
                append(cap, el("span", "rr-thumb-wins", `${row.wins}/${row.played} wins`),
                       el("span", "rr-thumb-overall", `BT ${Number(row.bt).toFixed(2)}`));
            } else {
                append(cap, el("span", "rr-thumb-overall", overallText(row.overall, r.labels)));
            }
            if (row.warnings) append(cap, el("span", "rr-thumb-warn", "⚠"));
            if (crit) {
                const d = append(details, el("details", "rr-rank-critique")).lastChild;
                d.dataset.rank = row.rank;
                append(d, el("summary", null, `#${row.rank} · input ${row.index} · overall ${overallText(row.overall, r.labels)}`),
                       critiqueView(crit));
            }
        });
        offset += rows.length;
        append(card, details);
    }
    return card;
}

/** A round's prompt: plain text, or the node's word diff against the round before
 *  ([{op: "same"|"add"|"del", text}], computed on the server with difflib). */
function promptDiff(parts, text) {
    const box = el("div", "rr-prompt");
    if (!parts) {
        box.textContent = text;
        return box;
    }
    for (const part of parts) {
        append(box, el(part.op === "add" ? "ins" : part.op === "del" ? "del" : "span", null, part.text));
    }
    return box;
}

/** One chip per dimension of a loop round: its title and score (N/A and unreadable by the payload's names). */
function scoreChips(round, statuses, titles, labels) {
    const chips = el("div", "rr-chips");
    for (const [key, score] of Object.entries(round.scores || {})) {
        const status = (statuses || {})[key] || (typeof score === "number" ? STATUS_OK : STATUS_MISSING);
        const chip = append(chips, el("span", "rr-chip")).lastChild;
        chip.dataset.key = key;
        chip.dataset.status = status;
        append(chip, el("span", "rr-chip-title", titles[key] || key),
               el("span", "rr-chip-score", scoreText(score, status, labels)));
    }
    return chips;
}

/** A loop card's head: the round count, the best round and why it stopped (or that it is still running). */
function loopHead(root, h) {
    const rounds = h.rounds || [];
    root.dataset.final = h.stop_reason ? "1" : "0";
    const head = append(root, el("div", "rr-row")).lastChild;
    append(head, el("span", "rr-label", `${rounds.length} round${rounds.length === 1 ? "" : "s"}`),
           el("span", "rr-loop-best", h.best === null || h.best === undefined ? "no readable round"
              : `best: round ${h.best}`));
    append(root, h.stop_reason ? textSection("rr-stop", "Stopped", h.stop_reason)
                               : el("div", "rr-stop rr-running", "running…"));
}

/** RR_RefineLoopEnd: every round's prompt (diff against the round before), seed and scores. */
export function renderLoop(list) {
    const card = cardShell("loop", "Refine loop");
    for (const h of list) {
        const rounds = h.rounds || [];
        const root = append(card, el("div", "rr-loop")).lastChild;
        loopHead(root, h);
        const titles = h.titles || {};
        rounds.forEach((r, i) => {
            const box = append(root, el("div", "rr-round")).lastChild;
            box.dataset.round = r.index;
            if (r.index === h.best) box.classList.add("rr-round-best");
            const top = append(box, el("div", "rr-row")).lastChild;
            append(top, el("span", "rr-round-title", `Round ${r.index}`),
                   r.index === h.best ? el("span", "rr-badge rr-badge-best", "best") : null,
                   r.good ? el("span", "rr-badge rr-badge-good", "meets rule") : null,
                   el("span", "rr-round-seed", `seed ${r.seed}`),
                   el("span", "rr-round-overall", overallText(r.overall, h.labels)));
            append(box, scoreChips(r, (h.statuses || [])[i], titles, h.labels));
            append(box, promptDiff((h.diffs || [])[i], r.prompt));
            if (r.warnings && r.warnings.length) append(box, warningsBlock(r.warnings));
            if (r.note) append(box, el("div", "rr-note", `next prompt: ${r.note}`));
        });
        const best = h.best !== null && h.best !== undefined ? rounds[h.best] : null;
        if (best) append(root, refinedBlock(best.prompt, "Best prompt"));
    }
    return card;
}

function thumb(ref, cls, alt, caption, imageUrl) {
    if (!ref) return null;
    const cell = el("figure", `rr-thumb ${cls}`);
    const img = el("img");
    img.alt = alt;
    img.src = imageUrl(ref);
    img.dataset.filename = ref.filename;
    append(cell, img, el("figcaption", null, caption));
    return cell;
}

/** RR_RepairLoopEnd: every round's mask over the image it repaired, the result, the regions, the scores
 *  before and after, and why the loop stopped. Round 0 is the image as given. */
export function renderRepair(list, imageUrl) {
    const card = cardShell("repair", "Repair loop");
    for (const h of list) {
        const rounds = h.rounds || [];
        const root = append(card, el("div", "rr-loop rr-repair")).lastChild;
        loopHead(root, h);
        const titles = h.titles || {};
        rounds.forEach((r, i) => {
            const repaired = r.subject !== null && r.subject !== undefined;
            const box = append(root, el("div", "rr-round")).lastChild;
            box.dataset.round = r.index;
            if (r.index === h.best) box.classList.add("rr-round-best");
            const top = append(box, el("div", "rr-row")).lastChild;
            const overall = repaired ? `${overallText(r.before, h.labels)} → ${overallText(r.overall, h.labels)}`
                                     : overallText(r.overall, h.labels);
            append(top, el("span", "rr-round-title", repaired ? `Round ${r.index}` : "Round 0 · as given"),
                   r.index === h.best ? el("span", "rr-badge rr-badge-best", "best") : null,
                   r.good ? el("span", "rr-badge rr-badge-good", "meets rule") : null,
                   repaired ? el("span", "rr-round-seed", `seed ${r.seed}`) : null,
                   el("span", "rr-round-overall", overall));
            const shots = (h.thumbs || [])[i] || {};
            const area = `${(100 * (r.mask_area || 0)).toFixed(1)}%`;
            const grid = append(box, el("div", "rr-thumbs rr-repair-thumbs")).lastChild;
            append(grid, thumb(shots.mask, "rr-repair-mask", `round ${r.index}: mask over round ${r.subject}`,
                               `mask · ${area}`, imageUrl),
                   thumb(shots.image, "rr-repair-image", `round ${r.index}`, repaired ? "result" : "as given",
                         imageUrl));
            append(box, scoreChips(r, (h.statuses || [])[i], titles, h.labels));
            if (repaired) {
                const regions = append(box, el("div", "rr-regions")).lastChild;
                append(regions, el("span", "rr-label", `repaired round ${r.subject}: `),
                       el("span", "rr-regions-found", (r.found || []).join(", ") || "—"));
                const missed = (r.phrases || []).filter((p) => !(r.found || []).includes(p)
                                                        && !(r.refused || []).some((x) => x.phrase === p));
                if (missed.length) append(box, el("div", "rr-note rr-regions-missed", `not found: ${missed.join(", ")}`));
                for (const x of r.refused || []) {
                    append(box, el("div", "rr-note rr-regions-refused",
                                   `refused: ${x.phrase} (${(100 * x.area).toFixed(0)}% of the image)`));
                }
            }
            if (r.note) append(box, el("div", "rr-note", r.note));
            if (r.warnings && r.warnings.length) append(box, warningsBlock(r.warnings));
        });
    }
    return card;
}
