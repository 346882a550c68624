//! The chat events of the original app: join_room, send_message, receive_message, leave_room.
