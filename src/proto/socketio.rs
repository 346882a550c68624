//! Socket.IO v5 packets, namespaces, acks and binary attachments.
