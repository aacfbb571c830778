"""Stage judge@itK: estimate the label noise from out-of-fold predictions and judge every free train row."""

import _common
from sentiloop.steps import judge

if __name__ == "__main__":
    a = _common.args(__doc__, k=True)
    _common.run(
        lambda s, L: judge.run(s, L, a.k),
        show=lambda r: print(
            f"judge it{a.k}: estimated noise {r['noise_rate']:.3f}, {r['flips']} flips "
            f"({r['new_flips']} new, {r['reverted']} reverted), {r['aside']} aside"
        ),
    )
