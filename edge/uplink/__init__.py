"""The edge's link to the hub: the outbox, the gRPC session (`hub_link`), its durable state and the wire
(`messages`, the only edge module besides `protos.codec` that reads or builds crossview.v1 messages)."""
