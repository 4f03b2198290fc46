using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>Builds the boolean attention masks (true = attend) that plain causal attention cannot express.</summary>
internal static class AttentionMask
{
    /// <summary>
    /// The mask [B, 1, T, S] for T queries that follow <paramref name="past"/> cached tokens, or null when plain
    /// causal attention is all that is needed (no padding, and no sliding window that cuts anything off).
    /// Combines: bottom-right causality (query t sits at slot past + t), key padding, and a sliding window
    /// (query at slot i sees key j only if i - j &lt; window, as transformers' Mistral). A query whose every key is
    /// masked (a padding position) attends to itself, so no row is empty and no NaN can reach later layers.
    /// </summary>
    /// <param name="queryLength">T, the new tokens.</param>
    /// <param name="past">Tokens before them; the queries sit at positions past .. past + T - 1.</param>
    /// <param name="keyPositions">Absolute position of each key, or null for 0 .. past + T - 1 in order.</param>
    /// <param name="paddingMask">Optional [B, past + T] (1 = token, 0 = padding), indexed by absolute position.</param>
    /// <param name="slidingWindow">Optional window.</param>
    /// <param name="device">Where to build the mask.</param>
    public static Tensor? Build(long queryLength, long past, long[]? keyPositions, Tensor? paddingMask, int? slidingWindow, Device device)
    {
        long keys = keyPositions?.LongLength ?? past + queryLength;
        long oldestKey = keyPositions is null ? 0 : keyPositions.Min();
        bool windowCuts = slidingWindow is { } window && past + queryLength - 1 - oldestKey >= window;
        if (paddingMask is null && !windowCuts) return null; // keys precede the queries in order: plain causal is right

        using var scope = NewDisposeScope();
        var queryAt = arange(past, past + queryLength, ScalarType.Int64, device).view(queryLength, 1); // [T, 1]
        var keyPositionsTensor = keyPositions is null
            ? arange(0, keys, ScalarType.Int64, device)
            : tensor(keyPositions, device: device);
        var keyAt = keyPositionsTensor.view(1, keys);                                                 // [1, S]
        var allowed = keyAt <= queryAt;                                                               // [T, S]
        if (windowCuts)
            allowed = allowed.logical_and_((queryAt - keyAt) < slidingWindow!.Value);
        var mask = allowed.view(1, 1, queryLength, keys);                                             // [1, 1, T, S]
        if (paddingMask is not null)
        {
            var keyIsToken = paddingMask.to(ScalarType.Bool);                                         // [B, past + T]
            if (keyPositions is not null) keyIsToken = keyIsToken.index_select(1, keyPositionsTensor);
            mask = mask.logical_and(keyIsToken.view(paddingMask.size(0), 1, 1, keys));               // [B, 1, T, S]
        }
        mask = mask.logical_or((keyAt == queryAt).view(1, 1, queryLength, keys));
        return mask.MoveToOuterDisposeScope();
    }

    /// <summary>Bottom-right causal mask [T, S]: query t (at slot S - T + t) sees keys 0..S - T + t.</summary>
    public static Tensor Causal(long queryLength, long keyLength, Device device)
        => ones([queryLength, keyLength], ScalarType.Bool, device).tril(keyLength - queryLength);
}
