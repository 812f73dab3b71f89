"""MACs and parameters of EfficientNet-Lite0 on one 224x224 image, dense and with the MBConv
expansions of blocks 1..15 pruned at a ratio (each expansion keeps hidden - hidden * ratio
channels, which also leave _bn0, the depthwise conv, _bn1 and the projection's input).

Independent of the Rust code: the block table is EfficientNet-B0's (Tan & Le, 2019, table 1),
spatial sizes follow TensorFlow "same" padding (ceil(H / stride)). MACs count convs as
out_elements * in/groups * k * k and the classifier as 1280 * 1000, as compress-graph's `count`
does; parameters are conv weights, BatchNorm gamma and beta (running statistics excluded) and the
classifier's weight and bias. The test `real_models::pruned_macs_equal_the_count_from_kept_channels`
copies these numbers.

    python3 scripts/reference/efficientnet_lite0_costs.py
"""
import numpy as np

STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def costs(ratio):
    macs = np.int64(0)
    params = np.int64(0)
    h = 224
    h = -(-h // 2)  # stem, stride 2
    macs += h * h * 32 * 3 * 9
    params += 32 * 3 * 9 + 2 * 32
    cin = 32
    hidden_after = []
    for expand, k, stride, out, repeats in STAGES:
        for i in range(repeats):
            s = stride if i == 0 else 1
            hidden = cin * expand
            if expand != 1:
                hidden -= int(np.floor(hidden * ratio))
                macs += h * h * hidden * cin  # 1x1 expansion at the input size
                params += hidden * cin + 2 * hidden
            hidden_after.append(hidden)
            h = -(-h // s)
            macs += h * h * hidden * k * k  # depthwise
            params += hidden * k * k + 2 * hidden
            macs += h * h * out * hidden  # projection
            params += out * hidden + 2 * out
            cin = out
    macs += h * h * 1280 * cin  # head
    params += 1280 * cin + 2 * 1280
    macs += 1280 * 1000
    params += 1280 * 1000 + 1000
    return int(macs), int(params), hidden_after


if __name__ == "__main__":
    for ratio in (0.0, 0.25):
        macs, params, hidden = costs(ratio)
        print(f"ratio {ratio}: macs {macs} params {params} hidden {hidden}")
    dense, pruned = costs(0.0)[0], costs(0.25)[0]
    print(f"macs ratio pruned/dense {pruned / dense:.6f}")
