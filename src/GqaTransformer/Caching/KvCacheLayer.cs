using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One layer's part of a <see cref="KvCache"/>: K and V [B, Hkv, Slots, D], preallocated, written in place at a
/// position, as HF's cache layers are. A dense part keeps every token (Slots = capacity); a ring part keeps a sliding
/// layer's last window (Slots = window), so memory stops at the window. Which a layer gets is its window (ADR 0021).
/// </summary>
internal abstract class KvCacheLayer : IDisposable
{
    protected KvCacheLayer(Tensor keys, Tensor values)
    {
        Keys = keys;
        Values = values;
    }

    /// <summary>[B, Hkv, Slots, D].</summary>
    public Tensor Keys { get; }

    /// <summary>[B, Hkv, Slots, D].</summary>
    public Tensor Values { get; }

    /// <summary>Token slots per sequence.</summary>
    public long Slots => Keys.size(2);

    /// <summary>Whether the slots form a ring over a window shorter than the cache's capacity.</summary>
    public abstract bool IsRing { get; }

    /// <summary>
    /// Writes keys and values [B, Hkv, T, D] of the tokens at positions [<paramref name="position"/>, position + T),
    /// the cache holding <paramref name="position"/> tokens before them, and returns what attention reads: [B, Hkv, S, D].
    /// </summary>
    public abstract (Tensor Keys, Tensor Values) Write(long position, Tensor keys, Tensor values);

    /// <summary>The absolute position of each key <see cref="Write"/> returns for <paramref name="tokens"/> tokens at <paramref name="position"/>, or null for 0 .. position + T - 1 in order.</summary>
    public abstract long[]? KeyPositions(long position, long tokens);

    /// <summary>The position each filled slot holds when the cache holds <paramref name="length"/> tokens.</summary>
    public long[] SlotPositions(long length)
    {
        long filled = Math.Min(length, Slots);
        var positions = new long[filled];
        for (long slot = 0; slot < filled; slot++)   // the latest position < length that maps to this slot
            positions[slot] = slot + (length - 1 - slot) / Slots * Slots;
        return positions;
    }

    /// <summary>Whether a cache of <paramref name="length"/> tokens can forget all but its first <paramref name="keep"/>.</summary>
    public bool CanKeep(long length, long keep) => keep == length || keep == 0 || length <= Slots;

    public void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
    }
}

/// <summary>A layer's cache that keeps every token: slot i holds position i.</summary>
internal sealed class DenseKvLayer(Tensor keys, Tensor values) : KvCacheLayer(keys, values)
{
    public override bool IsRing => false;

    public override (Tensor Keys, Tensor Values) Write(long position, Tensor keys, Tensor values)
    {
        long tokens = keys.size(2);
        Keys.narrow(2, position, tokens).copy_(keys);
        Values.narrow(2, position, tokens).copy_(values);
        return (Keys.narrow(2, 0, position + tokens), Values.narrow(2, 0, position + tokens));
    }

    public override long[]? KeyPositions(long position, long tokens) => null;
}

/// <summary>
/// A sliding layer's cache over its window: position p lives in slot p mod Slots, so a new token overwrites the one
/// that just left the window. Keys are stored already rotated, and the mask knows each slot's position, so attention
/// reads the ring in place in any order (ADR 0004).
/// </summary>
internal sealed class RingKvLayer(Tensor keys, Tensor values) : KvCacheLayer(keys, values)
{
    public override bool IsRing => true;

    public override (Tensor Keys, Tensor Values) Write(long position, Tensor keys, Tensor values)
    {
        long tokens = keys.size(2), filled = Math.Min(position, Slots);
        if (tokens == 1)
        {
            long slot = position % Slots;
            Keys.narrow(2, slot, 1).copy_(keys);
            Values.narrow(2, slot, 1).copy_(values);
            long used = Math.Min(position + 1, Slots);
            return (Keys.narrow(2, 0, used), Values.narrow(2, 0, used));
        }
        // A block of tokens: attend over what the ring holds plus the whole block (a temporary for this forward),
        // then keep the block's last Slots tokens in the ring.
        var allKeys = cat([Keys.narrow(2, 0, filled), keys], 2);
        var allValues = cat([Values.narrow(2, 0, filled), values], 2);
        long keep = Math.Min(tokens, Slots);
        for (long t = tokens - keep; t < tokens;)
        {
            long slot = (position + t) % Slots;
            long run = Math.Min(tokens - t, Slots - slot); // contiguous up to the end of the ring
            Keys.narrow(2, slot, run).copy_(keys.narrow(2, t, run));
            Values.narrow(2, slot, run).copy_(values.narrow(2, t, run));
            t += run;
        }
        return (allKeys, allValues);
    }

    public override long[]? KeyPositions(long position, long tokens)
    {
        if (tokens == 1) return SlotPositions(position + 1);   // the new token has overwritten its slot
        var held = SlotPositions(position);
        var positions = new long[held.Length + tokens];
        held.CopyTo(positions, 0);
        for (long t = 0; t < tokens; t++) positions[held.Length + t] = position + t;
        return positions;
    }
}
