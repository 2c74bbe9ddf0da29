create index orders_by_account on orders (account_id, created_at);
