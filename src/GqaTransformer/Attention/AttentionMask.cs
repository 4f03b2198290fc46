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
    public static Tensor? Build(long queryLength, long past, Tensor? paddingMask, int? slidingWindow, Device device)
    {
        long keys = past + queryLength;
        bool windowCuts = slidingWindow is { } window && keys > window;
        if (paddingMask is null && !windowCuts) return null;

        using var scope = NewDisposeScope();
        var querySlots = arange(past, keys, ScalarType.Int64, device).view(queryLength, 1); // [T, 1]
        var keySlots = arange(0, keys, ScalarType.Int64, device).view(1, keys);           // [1, S]
        var allowed = keySlots <= querySlots;                                             // [T, S]
        if (windowCuts)
            allowed = allowed.logical_and_((querySlots - keySlots) < slidingWindow!.Value);
        var mask = allowed.view(1, 1, queryLength, keys);                                 // [1, 1, T, S]
        if (paddingMask is not null)
            mask = mask.logical_and(paddingMask.to(ScalarType.Bool).view(paddingMask.shape[0], 1, 1, keys)); // [B, 1, T, S]
        mask = mask.logical_or((keySlots == querySlots).view(1, 1, queryLength, keys));
        return mask.MoveToOuterDisposeScope();
    }

    /// <summary>Bottom-right causal mask [T, S]: query t (at slot S - T + t) sees keys 0..S - T + t.</summary>
    public static Tensor Causal(long queryLength, long keyLength, Device device)
        => ones([queryLength, keyLength], ScalarType.Bool, device).tril(keyLength - queryLength);
}
