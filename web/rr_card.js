// RationalRewards critique card: after a critique / compare / rank / loop / repair node runs, show its
// parsed result on the node (scores as bars, N/A, overall, summary, justifications, refined
// prompt, warnings). Uses the public extension API only: registerExtension, the node's
// onExecuted hook and addDOMWidget. The data is the node's `ui` output, as sent by the server.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { renderCompare, renderCritiques, renderLoop, renderRank, renderRepair } from "./rr_card_dom.js";

const WIDGET = "rr_card";
const MIN_HEIGHT = 120;
const MAX_HEIGHT = 640;
const MARGIN = 10;  // the frontend's default DOM widget margin, above and below

// node id -> (ui payload -> card element)
const CARDS = {
    RR_CritiqueImage: (out) => out.rr_critiques && renderCritiques(out.rr_critiques, out.rr_images, imageUrl),
    RR_CritiqueEdit: (out) => out.rr_critiques && renderCritiques(out.rr_critiques, out.rr_images, imageUrl),
    RR_ReadCritique: (out) => out.rr_critiques && renderCritiques(out.rr_critiques, out.rr_images, imageUrl),
    RR_Compare: (out) => out.rr_compare && renderCompare(out.rr_compare, out.images, imageUrl),
    RR_Rank: (out) => out.rr_rank && renderRank(out.rr_rank, out.images, imageUrl),
    RR_RefineLoopEnd: (out) => out.rr_loop && renderLoop(out.rr_loop),
    RR_RepairLoopEnd: (out) => out.rr_repair && renderRepair(out.rr_repair, imageUrl),
};

function imageUrl(ref) {
    const q = new URLSearchParams({filename: ref.filename, subfolder: ref.subfolder || "", type: ref.type || "temp"});
    return api.apiURL(`/view?${q}`);
}

function loadStyles() {
    if (document.getElementById("rr-card-css")) return;
    const link = document.createElement("link");
    link.id = "rr-card-css";
    link.rel = "stylesheet";
    link.href = new URL("./rr_card.css", import.meta.url).href;
    document.head.appendChild(link);
}

/** Height the card wants at a given width, measured off-screen (capped: the card scrolls beyond). */
function measure(card, width) {
    const probe = document.createElement("div");
    probe.className = "rr-card-host";
    probe.style.cssText = `position:absolute;left:-10000px;top:0;visibility:hidden;width:${width}px;height:auto`;
    probe.appendChild(card);
    document.body.appendChild(probe);
    const h = probe.scrollHeight;
    probe.remove();
    return Math.max(MIN_HEIGHT, Math.min(MAX_HEIGHT, h + 2 * MARGIN + 4));
}

function showCard(node, card) {
    let widget = node.widgets?.find((w) => w.name === WIDGET);
    const width = Math.max(node.size[0], 420);
    const height = measure(card, width - 20);
    if (!widget) {
        const host = document.createElement("div");
        host.className = "rr-card-host";
        widget = node.addDOMWidget(WIDGET, "rr-card", host, {
            serialize: false,
            margin: MARGIN,
            getMinHeight: () => host.rrHeight ?? MIN_HEIGHT,
            getMaxHeight: () => Math.max(MAX_HEIGHT, host.rrHeight ?? 0),
        });
        widget.serialize = false;  // the card is output, not a widget value of the workflow
    }
    const host = widget.element;
    host.rrHeight = height;
    host.replaceChildren(card);
    fit(node, width);
    // opening a justification or a raw answer grows the card: grow the node with it (up to the cap;
    // beyond it the card scrolls) so nothing is pushed past the node's edge
    card.addEventListener("toggle", () => {
        host.rrHeight = Math.max(host.rrHeight, Math.min(MAX_HEIGHT, card.scrollHeight + 2 * MARGIN + 4));
        fit(node, node.size[0]);
    }, true);
}

function fit(node, width) {
    const min = node.computeSize();
    node.setSize([Math.max(width, min[0]), Math.max(node.size[1], min[1])]);
    node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
    name: "RationalRewards.CritiqueCard",
    setup() {
        loadStyles();
    },
    async beforeRegisterNodeDef(nodeType, nodeData) {
        const build = CARDS[nodeData.name];
        if (!build) return;
        const onExecuted = nodeType.prototype.onExecuted;
        nodeType.prototype.onExecuted = function (output) {
            const result = onExecuted?.apply(this, arguments);
            try {
                const card = output && build(output);
                if (card) showCard(this, card);
            } catch (err) {
                console.error("[RationalRewards] could not show the critique card", err);
            }
            return result;
        };
    },
});
