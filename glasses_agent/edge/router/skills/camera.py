"""What the camera answers on the device: barcodes, prices, text, "what is this".

Each must match the whole (normalised) question: "what is this" is answered
from recognition, "what is this made of" is a question for the cloud.
"""

from __future__ import annotations

from glasses_agent.edge.perception.text import price_lines
from glasses_agent.edge.router.language import THIS, read_out, spoken_barcode, whole
from glasses_agent.edge.router.skills.base import Answer, Context, Skill
from glasses_agent.spoken import article

__all__ = ["BARCODE", "IDENTIFY", "PRICE", "READ_TEXT"]

_MAX_PRICES = 3
_CODE = r"(?:barcode|bar code|qr code|code)"
_WRITTEN_ON = r"(?:sign|text|label|page|note|menu|board|screen|writing|tag|sticker|poster)"


def _barcode(ctx: Context) -> Answer:
    barcodes = ctx.barcodes
    if not barcodes:
        return Answer(rule="barcode", reply="I don't see a barcode. Hold it closer and steady.",
                      reason="asked for a barcode, none decoded")
    more = f" I see {len(barcodes) - 1} more." if len(barcodes) > 1 else ""
    return Answer(rule="barcode", reply=spoken_barcode(barcodes[0]) + more,
                  reason=f"decoded {len(barcodes)} barcode(s)")


def _price(ctx: Context) -> Answer | None:
    prices = price_lines(ctx.text_lines)
    if not prices:
        return None
    if len(prices) == 1:
        reply = f"The price says: {read_out(prices)}"
    else:
        more = ", and more" if len(prices) > _MAX_PRICES else ""
        reply = f"I see {len(prices)} prices: {read_out(prices[:_MAX_PRICES]).rstrip('.')}{more}."
    return Answer(rule="price", reply=reply, reason=f"OCR read {len(prices)} price line(s)")


def _read(ctx: Context) -> Answer | None:
    text = ctx.text_lines
    if text:
        return Answer(rule="read_text", reply=f"It says: {read_out(text)}",
                      reason=f"OCR read {len(text)} line(s)")
    if ctx.barcodes:
        return Answer(rule="barcode", reply=spoken_barcode(ctx.barcodes[0]),
                      reason="no text, but a barcode")
    return None


def _identify(ctx: Context) -> Answer | None:
    label = ctx.in_view
    if label is None:
        return None
    return Answer(rule="identify", reply=f"It looks like {article(label.name)} {label.name}.",
                  reason=f"label {label.name!r} at {label.score:.2f} >= "
                         f"{ctx.config.confident_label_score:g}")


def _unsure(ctx: Context) -> Answer:
    guess = ctx.best_guess
    reply = (f"I'm not sure. It might be {article(guess.name)} {guess.name}." if guess
             else "I'm not sure what this is.")
    return Answer(rule="identify", reply=reply, reason="labels below the confidence threshold")


BARCODE = Skill(name="barcode", answer=_barcode, needs_camera=True, patterns=(whole(
    rf"(?:what's|what is|whats) (?:{THIS}|the) {_CODE}|"
    rf"scan {THIS}(?: {_CODE})?|read {THIS} {_CODE}|"
    rf"(?:scan|read) (?:the |this |that )?{_CODE}|"
    rf"(?:what does|what's in|what is in) (?:the |this |that )?{_CODE}(?: say)?|"
    r"barcode|qr code"
),))
# "how much is this": the price tag, read by OCR.
PRICE = Skill(
    name="price", answer=_price, needs_camera=True,
    escalation_reason="asked for a price, but no price was read on the device",
    patterns=(whole(
        rf"how much(?: (?:is|are|does|do|for) {THIS}(?: one| thing| cost| costs)?)?|"
        rf"(?:what's|what is|whats) the (?:price|cost)(?: of {THIS}| here| on {THIS})?|"
        rf"(?:what's|what is|whats) {THIS} (?:price|cost)|what (?:does|do) {THIS} cost|"
        r"(?:what does )?the price(?: tag)?(?: say)?|price(?: check)?"
    ),),
)
READ_TEXT = Skill(
    name="read_text", answer=_read, needs_camera=True,
    escalation_reason="asked to read, but no text was read on the device",
    patterns=(whole(
        rf"read {THIS}(?: out| to me| out loud| aloud)?|read (?:me )?(?:the |this |that )?"
        rf"{_WRITTEN_ON}(?: out| to me| aloud)?|"
        rf"what does {THIS} say|what does (?:the |this |that )?{_WRITTEN_ON} say|"
        rf"what {THIS} says|what (?:the |this |that )?{_WRITTEN_ON} says|"
        rf"(?:what's|what is|whats) (?:written )?on (?:the |this |that )?{_WRITTEN_ON}|"
        rf"(?:what's|what is|whats) written(?: here| there| on {THIS})?|"
        rf"what does {THIS} read|what do (?:these|those|the) (?:signs|words|labels) say"
    ),),
)
IDENTIFY = Skill(
    name="identify", answer=_identify, needs_camera=True, unanswered=_unsure,
    escalation_reason="recognition is not confident",
    patterns=(whole(
        rf"(?:what's|what is|whats) {THIS}(?: thing| object)?|what {THIS} (?:is|are)|"
        r"what am i (?:looking at|seeing|holding)|what (?:do|can) you see|"
        r"(?:what's|what is|whats) in front of me|"
        rf"identify {THIS}|(?:what|which) (?:thing|object) is {THIS}|"
        r"what are (?:these|those)"
    ),),
)
