package analytics.engine.server;

import com.google.protobuf.MessageLite;

/**
 * A request as {@link PackedDoublesMarshaller} decodes it: the generated message holding every field
 * except the lifted {@code repeated double} fields (left empty in {@code message}), and those fields as
 * plain arrays, in the order the marshaller was given their field numbers.
 *
 * @param message the message without the lifted fields (unknown fields kept as the generated parser keeps them)
 * @param arrays  one array per lifted field, never null (empty when the field was absent)
 * @param decodeNanos how long the decode took (the whole message had been received when it began): the
 *                    engine reports it as {@code metadata.stats.decode_us}
 */
public record BulkMessage<M extends MessageLite>(M message, double[][] arrays, long decodeNanos) {

    /** The values of the {@code i}-th lifted field. */
    public double[] array(int i) {
        return arrays[i];
    }
}
