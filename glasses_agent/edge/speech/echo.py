"""The echo guard: the assistant must not hear its own voice as the next question.

Open-ear speakers sit next to the microphone, so what the glasses say comes back
in the microphone a few milliseconds later, at some level. The playback sink
remembers what it played and when (``AudioSink.reference``); ``EchoCanceller``
subtracts its echo from each microphone chunk before the VAD sees it.

It is a frequency-domain block NLMS adaptive filter (overlap-save, the
"FDAF" of the echo-cancellation literature): a ``taps``-long FIR estimate of the
speaker-to-microphone path, adapted every 256 samples (16 ms at 16 kHz) on the
error, with a step normalised by the reference's power per frequency bin and a
Geigel double-talk detector that freezes adaptation while the wearer talks (so
their voice, which is not in the reference, is kept and not learned away).
Cost: two FFTs of 512 per 16 ms block, a fraction of a millisecond.

What the canceller leaves is small but still speech-like, and the VAD does not
care about level: a residual 20 dB down still reads as speech while the filter
learns (the first half second of an answer). So each block also gets a
near-end score (``near_end_db``): how far the output stands above the residual
expected from echo alone, that is the microphone's level times the filter's
recent echo return loss (the 30th percentile of residual/microphone over the
last second with echo present; zero when the speaker plays aloud and the
microphone hears nothing of it) plus the microphone's noise floor (its quietest
block in the last two seconds). The wearer's own voice is not in the reference,
so it is not cancelled and stands well above that; a barge-in needs both the
VAD and this score (``glasses_agent.edge.hearing``). Measured on 192 echo-only
answers (4 answers, 3 acoustic paths, 16 block offsets; no noise, -60 and -45
dBFS noise): 0 false barge-ins with the score, 144 of 192 without it. The
return loss is taken as no better than ``_LOSS_FLOOR`` (-20 dB): bursts of what
the filter has not learnt come that far up, however well it cancels the rest.

``settled`` (per block) says when the score may be trusted on its own, as the
onset of a sound that is not ours (the barge-in's hold, before the VAD): the filter
cancelled our voice by 10 dB, or down to the noise, in each of the last
``_SETTLED_BLOCKS`` blocks that had it. A block it cancels worse without the
block standing out of the echo starts the count again (the filter is off); one
that stands out is someone talking over us, and keeps the count a while. A
pause between sentences needs one good block again, a pause between answers
(``_QUIET_BLOCKS``) or a divergence the whole count; while nothing of ours played
lately, every block is settled: what the microphone hears then is not us.

``AcousticPath`` is the other side, for tests and the simulator: a speaker's
output reaching a microphone with a gain, a delay and a short room response.
"""

from __future__ import annotations

import collections

import numpy as np

from glasses_agent.frames import FloatArray

__all__ = ["AcousticPath", "EchoCanceller"]


class EchoCanceller:
    """Takes the reference's echo out of the microphone signal, block by block.

    ``process(mic, reference)``: the same number of samples of each, aligned in time
    (``reference`` is what the speaker played over the same span); returns the
    echo-free signal of the whole blocks completed so far (a multiple of ``block``
    samples; the rest waits for the next call).
    """

    # Near-end score: the residual echo return loss is this percentile of the last
    # ``_RATIO_BLOCKS`` echo-present blocks; the noise floor the quietest of ``_NOISE_BLOCKS``.
    _RATIO_PERCENTILE = 30.0
    _RATIO_BLOCKS = 62  # 1 s of 16 ms blocks
    _NOISE_BLOCKS = 125  # 2 s
    _ECHO_PRESENT = 10.0  # a block louder than 10x the noise floor, while playing, has echo
    _FLOOR = 1e-9  # -90 dBFS: digital silence is not a noise floor
    _LOUD = 1e-5  # -50 dBFS: a reference block this loud would be heard if there were echo
    _LOSS_FLOOR = 1e-2  # -20 dB: expect no better, whatever the filter did lately
    # Settled: this many echo-present blocks in a row, each cancelled by 10 dB or more.
    # A block that cancels worse and does not stand out of the echo (below _SETTLED_NEAR_END_DB)
    # starts the count again; one that stands out is someone else talking over us.
    _SETTLED_BLOCKS = 6
    _SETTLED_LOSS = 0.1
    _SETTLED_NEAR_END_DB = 3.0
    _TALKED_OVER_BLOCKS = 10  # the onset of someone's speech over ours is trusted this long
    _QUIET_BLOCKS = 31  # 0.5 s: a pause between answers, not between sentences

    def __init__(self, *, block: int = 256, step: float = 0.3, geigel: float = 0.6,
                 smoothing: float = 0.8, regularization: float = 1e-3) -> None:
        self.block = block
        self.step = step
        self.geigel = geigel
        self.smoothing = smoothing
        self.regularization = regularization
        self.reset()

    def reset(self) -> None:
        n = self.block
        self._weights = np.zeros(n + 1, dtype=np.complex128)  # rfft of a 2N window
        self._power = np.zeros(n + 1)
        self._adapted = False
        self._previous_ref = np.zeros(n)
        self._ref_history = np.zeros(4 * n)  # for the double-talk detector
        self._mic_buffer = np.zeros(0)
        self._ref_buffer = np.zeros(0)
        self._error_power = 0.0
        self._mic_power = 0.0
        self.last_echo_likeness = 0.0
        self._mic_energy: collections.deque[float] = collections.deque(maxlen=self._NOISE_BLOCKS)
        self._ratios: collections.deque[float] = collections.deque(maxlen=self._RATIO_BLOCKS)
        self.near_end_db: list[float] = []  # per block returned by the last ``process``
        self.settled: list[bool] = []  # per block: the filter was cancelling well before it
        self._settled_run = 0  # echo-present blocks in a row cancelled by _SETTLED_LOSS
        self._talked_over = 0  # blocks since, that stood out of the echo
        self._quiet_blocks = 0  # blocks in a row with nothing played lately
        self.double_talk_blocks = 0
        self.diverged_blocks = 0
        self.blocks = 0

    @property
    def pending(self) -> int:
        """Samples taken in but not yet returned (less than a block)."""
        return len(self._mic_buffer)

    def process(self, mic: FloatArray, reference: FloatArray) -> FloatArray:
        if len(mic) != len(reference):
            raise ValueError(f"mic and reference differ in length ({len(mic)} vs "
                             f"{len(reference)})")
        self._mic_buffer = np.concatenate([self._mic_buffer, mic])
        self._ref_buffer = np.concatenate([self._ref_buffer, reference])
        out = []
        self.near_end_db = []
        self.settled = []
        while len(self._mic_buffer) >= self.block:
            d, self._mic_buffer = self._mic_buffer[:self.block], self._mic_buffer[self.block:]
            x, self._ref_buffer = self._ref_buffer[:self.block], self._ref_buffer[self.block:]
            residual, cleaned = self._block(d, x)  # (its run ends if the filter diverged)
            # nothing of ours played lately (no residual): whatever the microphone hears is not us
            self.settled.append(residual is None or self._settled_run >= self._SETTLED_BLOCKS)
            self.near_end_db.append(self._near_end(d, x, residual, cleaned))
            out.append(cleaned)
        if not out:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    def _suppression(self, error: np.ndarray, window: np.ndarray) -> float:
        """Residual echo suppression: a gain for ``error`` that falls from 1 to 0 as it looks
        like the reference (its normalised cross-correlation with the last two blocks
        played, at any lag the filter spans, from 0.3 to 0.7). While the filter is still
        learning the path (the first tenths of a second of an answer), the echo comes
        through nearly whole; this keeps it from the VAD. The wearer's voice, which is not
        in the reference, keeps its gain."""
        n = self.block
        energy = float(np.dot(error, error))
        if energy < 1e-10:
            return 1.0
        corr = np.fft.irfft(np.fft.rfft(window) * np.conj(np.fft.rfft(np.concatenate(
            [np.zeros(n), error]))))
        # corr[k] = sum_i window[i + k] * [0, e][i]: the reference k samples behind e.
        lags = corr[-n:] if n else corr
        ref_energy = float(np.dot(window, window)) / 2.0 + 1e-12
        rho = float(np.max(np.abs(lags))) / np.sqrt(energy * ref_energy)
        self.last_echo_likeness = rho
        return float(np.clip(1.0 - (rho - 0.3) / 0.4, 0.0, 1.0))

    def _near_end(self, d: np.ndarray, x: np.ndarray, residual: np.ndarray | None,
                  cleaned: np.ndarray) -> float:
        """How far (dB) ``cleaned`` stands above what echo alone would leave of ``d``."""
        mic = float(np.mean(d * d)) + 1e-12
        self._mic_energy.append(mic)
        noise = max(min(self._mic_energy), self._FLOOR)
        cancelled: bool | None = None  # by _SETTLED_LOSS, or down to the noise
        if residual is not None and mic > self._ECHO_PRESENT * noise:
            left = float(np.mean(residual * residual))
            self._ratios.append(min(left / mic, 1.0))
            cancelled = left <= self._SETTLED_LOSS * mic + 2.0 * noise
        elif float(np.mean(x * x)) > self._LOUD and mic < 2.0 * noise:
            self._ratios.append(0.0)  # playing aloud and the microphone hears none of it
        loss = (max(float(np.percentile(self._ratios, self._RATIO_PERCENTILE)), self._LOSS_FLOOR)
                if len(self._ratios) >= 3 else 1.0)  # no estimate yet: assume none
        out = float(np.mean(cleaned * cleaned)) + 1e-12
        score = 10.0 * float(np.log10(out / (loss * mic + noise)))
        self._count_settled(played=residual is not None, cancelled=cancelled, score=score)
        return score

    def _count_settled(self, *, played: bool, cancelled: bool | None, score: float) -> None:
        """After a block: the run of well-cancelled blocks behind ``settled``. ``played``:
        something of ours played lately; ``cancelled``: the echo-present block was cancelled
        (None: no echo in it); ``score``: its near-end score."""
        if not played:  # nothing played lately: check the filter on our next sound (again
            self._quiet_blocks += 1  # from the start after a long silence, in which the
            long = self._quiet_blocks >= self._QUIET_BLOCKS  # path may have changed)
            self._settled_run = 0 if long else min(self._settled_run, self._SETTLED_BLOCKS - 1)
            return
        self._quiet_blocks = 0
        if cancelled is None:
            return
        if cancelled:
            self._settled_run += 1
            self._talked_over = 0
        elif score < self._SETTLED_NEAR_END_DB:
            self._settled_run = 0  # our own voice, badly cancelled: the filter is off
        else:  # someone else talking over us: the filter is as good as it was, for a while
            self._talked_over += 1  # (past that, it may have learnt some of their voice)
            if self._talked_over > self._TALKED_OVER_BLOCKS:
                self._settled_run = 0

    def _block(self, d: np.ndarray, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """One block: the echo estimate out of ``d``, the filter adapted on the error, the
        residual suppressed. Returns (the linear filter's residual, None when nothing was
        played lately; what the VAD should hear)."""
        n = self.block
        self.blocks += 1
        window = np.concatenate([self._previous_ref, x])
        self._previous_ref = x
        self._ref_history = np.concatenate([self._ref_history[n:], x])
        if float(np.max(np.abs(self._ref_history))) < 1e-4:
            return None, d  # nothing played lately: nothing to cancel, nothing to learn
        spectrum = np.fft.rfft(window)
        error = d - np.fft.irfft(spectrum * self._weights)[n:]
        if self._diverging(error, d):
            self._settled_run = 0  # the filter starts over: the microphone passes through
            return error, d
        out = error * self._suppression(error, window)
        near = float(np.max(np.abs(d)))
        if near > self.geigel * 2.0 * float(np.max(np.abs(self._ref_history))) \
                and float(np.max(np.abs(error))) > 0.5 * near:
            self.double_talk_blocks += 1  # the wearer is talking: keep the filter as is
            return error, out
        self._adapt(spectrum, error)
        return error, out

    def _diverging(self, error: np.ndarray, d: np.ndarray) -> bool:
        """True (and the estimate started over) when it keeps adding more than it removes
        (no echo here, or the path changed); also True for a block it would make louder."""
        e2, d2 = float(np.dot(error, error)), float(np.dot(d, d))
        self._error_power = 0.8 * self._error_power + 0.2 * e2
        self._mic_power = 0.8 * self._mic_power + 0.2 * d2
        if self._error_power > 2.0 * self._mic_power + 1e-9:
            self.diverged_blocks += 1
            self._weights[:] = 0
            self._adapted = False
            self._error_power = self._mic_power
            return True
        return e2 > 4.0 * d2 + 1e-9

    def _adapt(self, spectrum: np.ndarray, error: np.ndarray) -> None:
        n = self.block
        power = np.abs(spectrum) ** 2
        if not self._adapted:  # the first block played: start from its own power
            self._power = power.copy()
            self._adapted = True
        self._power = self.smoothing * self._power + (1.0 - self.smoothing) * power
        gradient = np.conj(spectrum) * np.fft.rfft(np.concatenate([np.zeros(n), error]))
        gradient /= self._power + self.regularization * float(np.mean(self._power)) + 1e-10
        constrained = np.fft.irfft(gradient)[:n]  # keep the filter causal, n taps
        self._weights += self.step * np.fft.rfft(np.concatenate([constrained, np.zeros(n)]))


class AcousticPath:
    """A speaker's sound reaching a microphone: ``gain`` (linear), ``delay_s``, and a short
    exponentially decaying room response (``reverb_s``; 0 for none), deterministic."""

    def __init__(self, *, gain: float = 0.3, delay_s: float = 0.003, reverb_s: float = 0.01,
                 rate_hz: int = 16_000, seed: int = 0) -> None:
        taps = max(1, int(round(reverb_s * rate_hz)))
        rng = np.random.default_rng(seed)
        decay = np.exp(-np.arange(taps) / max(1.0, taps / 4.0))
        response = rng.normal(0.0, 1.0, taps) * decay * 0.3
        response[0] = 1.0
        self.impulse = np.concatenate([np.zeros(int(round(delay_s * rate_hz))),
                                       gain * response / np.sqrt(np.sum(response ** 2))])
        self.rate_hz = rate_hz

    def apply(self, played: FloatArray) -> FloatArray:
        """What the microphone hears of ``played`` (same length, the tail dropped)."""
        if not len(played):
            return np.zeros(0, dtype=np.float32)
        return np.convolve(played, self.impulse)[:len(played)].astype(np.float32)
