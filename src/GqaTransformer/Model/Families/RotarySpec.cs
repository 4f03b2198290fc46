namespace GqaTransformer;

/// <summary>
/// The RoPE of one layer: the first <see cref="RotaryDim"/> of <see cref="HeadDim"/> dimensions rotate (all of them
/// but in Phi-3's partial rotary), at base <see cref="Theta"/>, with an optional scaling. Layers with equal specs share
/// one table. LongRoPE switches to its long factors once a forward reaches past <see cref="OriginalMaxPositions"/>.
/// </summary>
internal sealed record RotarySpec(int HeadDim, int RotaryDim, double Theta, RopeScaling? Scaling, int? OriginalMaxPositions = null, int MaxPositions = 0)
{
    /// <summary>Throws an <see cref="ArgumentException"/> naming the field unless the spec can be computed.</summary>
    public void Validate()
    {
        if (!(Theta > 0) || double.IsInfinity(Theta))
            throw new ArgumentException($"rope_theta must be a positive finite number, but was {Theta}.", "config");
        if (RotaryDim <= 0 || RotaryDim > HeadDim || RotaryDim % 2 != 0)
            throw new ArgumentException(
                $"The rotated dimensions (head_dim {HeadDim} × partial_rotary_factor) must be an even number in (0, {HeadDim}], but are {RotaryDim}.", "config");
        Scaling?.Validate(RotaryDim);
        if (Scaling?.RopeType == "longrope" && OriginalMaxPositions is not > 0)
            throw new ArgumentException("rope_type 'longrope' needs a positive original_max_position_embeddings.", "config");
    }
}
