//! Jobs without HTTP: the bounded queue, the model thread, job events and the result store.
