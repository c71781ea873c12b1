package analytics.engine.server;

import com.google.protobuf.MessageLite;

/**
 * A request as {@link PackedDoublesMarshaller} decodes it: the generated message holding every field
 * except the lifted {@code repeated double} fields (left empty in {@code message}), and those fields as
 * plain arrays, in the order the marshaller was given their field numbers.
 *
 * @param message the message without the lifted fields (unknown fields kept as the generated parser keeps them)
 * @param arrays  one array per lifted field, never null (empty when the field was absent)
 */
public record BulkMessage<M extends MessageLite>(M message, double[][] arrays) {

    /** The values of the {@code i}-th lifted field. */
    public double[] array(int i) {
        return arrays[i];
    }
}
