-- A sprx server store as made by git commit cebbe3a (sqlite); see make_server_store_v0.py.
CREATE TABLE applied_mutation (
	device_id VARCHAR(64) NOT NULL, 
	mutation_id INTEGER NOT NULL, 
	payload_sha256 VARCHAR(64) NOT NULL, 
	result TEXT NOT NULL, 
	applied_at INTEGER NOT NULL, 
	PRIMARY KEY (device_id, mutation_id)
);
CREATE TABLE assignment (
	person_id VARCHAR(64) NOT NULL, 
	practice_id VARCHAR(64) NOT NULL, 
	worker_id VARCHAR(64), 
	team_id VARCHAR(64), 
	seq INTEGER NOT NULL, 
	PRIMARY KEY (person_id)
);
CREATE INDEX ix_assignment_team_id ON assignment (team_id);
CREATE INDEX ix_assignment_worker_id ON assignment (worker_id);
CREATE TABLE assignment_log (
	seq INTEGER NOT NULL, 
	person_id VARCHAR(64) NOT NULL, 
	practice_id VARCHAR(64) NOT NULL, 
	old_worker_id VARCHAR(64), 
	old_team_id VARCHAR(64), 
	PRIMARY KEY (seq)
);
CREATE TABLE change_log (
	seq INTEGER NOT NULL, 
	kind VARCHAR(10) NOT NULL, 
	tbl VARCHAR(64) NOT NULL, 
	row_id VARCHAR(64) NOT NULL, 
	person_id VARCHAR(64), 
	practice_id VARCHAR(64) NOT NULL, 
	origin_device VARCHAR(64) NOT NULL, 
	origin_mutation_id INTEGER, 
	at INTEGER NOT NULL, 
	PRIMARY KEY (seq), 
	CONSTRAINT uq_change_log_row UNIQUE (kind, tbl, row_id)
);
CREATE TABLE "conflict" (
	id VARCHAR(64) NOT NULL, 
	practice_id VARCHAR(64) NOT NULL, 
	tbl VARCHAR(64) NOT NULL, 
	row_id VARCHAR(64) NOT NULL, 
	person_id VARCHAR(64), 
	field VARCHAR(64) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	"values" TEXT NOT NULL, 
	shown_idx INTEGER NOT NULL, 
	status VARCHAR(10) NOT NULL, 
	resolution TEXT, 
	seq INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_conflict_row ON "conflict" (tbl, row_id, status);
CREATE TABLE deleted_id (
	tbl VARCHAR(64) NOT NULL, 
	id VARCHAR(64) NOT NULL, 
	seq INTEGER NOT NULL, 
	PRIMARY KEY (tbl, id)
);
CREATE TABLE practice (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE quarantine (
	id INTEGER NOT NULL, 
	device_id VARCHAR(64) NOT NULL, 
	mutation_id INTEGER NOT NULL, 
	reason VARCHAR(64) NOT NULL, 
	detail TEXT, 
	payload TEXT NOT NULL, 
	at INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE record (
	tbl VARCHAR(64) NOT NULL, 
	id VARCHAR(64) NOT NULL, 
	practice_id VARCHAR(64) NOT NULL, 
	person_id VARCHAR(64), 
	"values" TEXT NOT NULL, 
	meta TEXT NOT NULL, 
	deleted BOOLEAN NOT NULL, 
	seq INTEGER NOT NULL, 
	lookup VARCHAR(64), 
	PRIMARY KEY (tbl, id)
);
CREATE INDEX ix_record_lookup ON record (practice_id, tbl, lookup);
CREATE INDEX ix_record_person_id ON record (person_id);
CREATE INDEX ix_record_tbl_person ON record (tbl, person_id, id);
CREATE TABLE server_meta (
	id INTEGER NOT NULL, 
	epoch VARCHAR(36) NOT NULL, 
	tombstone_watermark INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	hlc INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE team (
	id VARCHAR(64) NOT NULL, 
	practice_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(practice_id) REFERENCES practice (id)
);
CREATE TABLE worker (
	id VARCHAR(64) NOT NULL, 
	practice_id VARCHAR(64) NOT NULL, 
	team_id VARCHAR(64), 
	created_at INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(practice_id) REFERENCES practice (id), 
	FOREIGN KEY(team_id) REFERENCES team (id)
);
CREATE TABLE device (
	id VARCHAR(64) NOT NULL, 
	worker_id VARCHAR(64) NOT NULL, 
	practice_id VARCHAR(64) NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	token_sha256 VARCHAR(64) NOT NULL, 
	enrolled_at INTEGER NOT NULL, 
	revoked_at INTEGER, 
	last_acked_mutation_id INTEGER NOT NULL, 
	last_pull_seq INTEGER NOT NULL, 
	last_seen INTEGER, 
	retired_at INTEGER, 
	pending_reported INTEGER, 
	pending_reported_at INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(worker_id) REFERENCES worker (id), 
	UNIQUE (token_sha256)
);
CREATE TABLE enrol_code (
	code_sha256 VARCHAR(64) NOT NULL, 
	worker_id VARCHAR(64) NOT NULL, 
	expires_at INTEGER NOT NULL, 
	used_at INTEGER, 
	device_id VARCHAR(64), 
	PRIMARY KEY (code_sha256), 
	FOREIGN KEY(worker_id) REFERENCES worker (id)
);
INSERT INTO applied_mutation (device_id, mutation_id, payload_sha256, result, applied_at) VALUES ('647048b3-5305-4e36-be46-56c199471ca7', 1, '0f8108c8acb1d47db537227842c56fc7166da116d8b94118e281b3245a364da6', '{"conflict_ids":[],"detail":null,"mutation_id":1,"reason":null,"seq":1,"status":"applied"}', 1765000014000);
INSERT INTO applied_mutation (device_id, mutation_id, payload_sha256, result, applied_at) VALUES ('647048b3-5305-4e36-be46-56c199471ca7', 2, '1ec68344cf4a5b82518e95378a6fa2b410935132e78fafd18172df794259a311', '{"conflict_ids":[],"detail":null,"mutation_id":2,"reason":null,"seq":3,"status":"applied"}', 1765000014000);
INSERT INTO applied_mutation (device_id, mutation_id, payload_sha256, result, applied_at) VALUES ('647048b3-5305-4e36-be46-56c199471ca7', 3, 'ac2044a8a308d716cd395fbd77d45dbc2c22942c04cfa833540633a9c62ce44a', '{"conflict_ids":[],"detail":null,"mutation_id":3,"reason":null,"seq":4,"status":"applied"}', 1765000014000);
INSERT INTO applied_mutation (device_id, mutation_id, payload_sha256, result, applied_at) VALUES ('647048b3-5305-4e36-be46-56c199471ca7', 4, 'f7a4b48a32ef85004ba7f2ac690b4db532e61f0f4d92e9cccc4299f55bcc13f2', '{"conflict_ids":[],"detail":null,"mutation_id":4,"reason":null,"seq":9,"status":"applied"}', 1765000031000);
INSERT INTO applied_mutation (device_id, mutation_id, payload_sha256, result, applied_at) VALUES ('647048b3-5305-4e36-be46-56c199471ca7', 5, 'e9041aa6058a5e466501ff67af188f42fd53ca56cc640465af061398641a1b52', '{"conflict_ids":[],"detail":"This kind of record cannot be deleted.","mutation_id":5,"reason":"not_deletable","seq":null,"status":"rejected"}', 1765000054000);
INSERT INTO applied_mutation (device_id, mutation_id, payload_sha256, result, applied_at) VALUES ('89c3d772-4c72-48b3-97f4-87daa5dba805', 1, 'b4e4532b1aaa7f32d878848a3ba5738ce766999f9fedac0832cce690eed4da87', '{"conflict_ids":["3855a704-5882-52af-a3b5-8f6fdda534ac"],"detail":null,"mutation_id":1,"reason":null,"seq":10,"status":"applied"}', 1765000036000);
INSERT INTO applied_mutation (device_id, mutation_id, payload_sha256, result, applied_at) VALUES ('89c3d772-4c72-48b3-97f4-87daa5dba805', 2, '2d2e60c85f635eee2144062e00b7a0c715a2c280573003fe0c3fcd36aae589ca', '{"conflict_ids":[],"detail":"The given name of person p-2 holds a control character (U+001B).","mutation_id":2,"reason":"invalid_value","seq":null,"status":"rejected"}', 1765000041000);
INSERT INTO applied_mutation (device_id, mutation_id, payload_sha256, result, applied_at) VALUES ('89c3d772-4c72-48b3-97f4-87daa5dba805', 3, '385cc2e0cf9cb566b4728e6e03eb04a6da6cce89ac3b89f84b36d01b057bad0c', '{"conflict_ids":[],"detail":null,"mutation_id":3,"reason":null,"seq":12,"status":"applied"}', 1765000043000);
INSERT INTO assignment (person_id, practice_id, worker_id, team_id, seq) VALUES ('b8a242d9-b659-5db6-a405-4f4ecfb46ea6', 'P1', 'asmith', NULL, 15);
INSERT INTO assignment (person_id, practice_id, worker_id, team_id, seq) VALUES ('p-1', 'P1', NULL, 'T1', 5);
INSERT INTO assignment (person_id, practice_id, worker_id, team_id, seq) VALUES ('p-3', 'P1', 'bjones', NULL, 13);
INSERT INTO assignment_log (seq, person_id, practice_id, old_worker_id, old_team_id) VALUES (5, 'p-1', 'P1', 'asmith', NULL);
INSERT INTO change_log (seq, kind, tbl, row_id, person_id, practice_id, origin_device, origin_mutation_id, at) VALUES (6, 'record', 'contact', 'c-1', 'p-1', 'P1', 'server', NULL, 1765000030000);
INSERT INTO change_log (seq, kind, tbl, row_id, person_id, practice_id, origin_device, origin_mutation_id, at) VALUES (8, 'record', 'person', 'p-1', 'p-1', 'P1', 'server', NULL, 1765000030000);
INSERT INTO change_log (seq, kind, tbl, row_id, person_id, practice_id, origin_device, origin_mutation_id, at) VALUES (10, 'record', 'goal', 'g-1', 'p-1', 'P1', '89c3d772-4c72-48b3-97f4-87daa5dba805', 1, 1765000036000);
INSERT INTO change_log (seq, kind, tbl, row_id, person_id, practice_id, origin_device, origin_mutation_id, at) VALUES (11, 'conflict', 'goal', '3855a704-5882-52af-a3b5-8f6fdda534ac', 'p-1', 'P1', '89c3d772-4c72-48b3-97f4-87daa5dba805', 1, 1765000036000);
INSERT INTO change_log (seq, kind, tbl, row_id, person_id, practice_id, origin_device, origin_mutation_id, at) VALUES (12, 'record', 'person', 'p-3', 'p-3', 'P1', '89c3d772-4c72-48b3-97f4-87daa5dba805', 3, 1765000043000);
INSERT INTO change_log (seq, kind, tbl, row_id, person_id, practice_id, origin_device, origin_mutation_id, at) VALUES (16, 'record', 'person', 'b8a242d9-b659-5db6-a405-4f4ecfb46ea6', 'b8a242d9-b659-5db6-a405-4f4ecfb46ea6', 'P1', 'server', NULL, 1765000051000);
INSERT INTO change_log (seq, kind, tbl, row_id, person_id, practice_id, origin_device, origin_mutation_id, at) VALUES (17, 'record', 'referral', '105471a3-fc6d-5da8-80bc-ec1861980289', 'b8a242d9-b659-5db6-a405-4f4ecfb46ea6', 'P1', 'server', 0, 1765000053000);
INSERT INTO "conflict" (id, practice_id, tbl, row_id, person_id, field, kind, "values", shown_idx, status, resolution, seq) VALUES ('3855a704-5882-52af-a3b5-8f6fdda534ac', 'P1', 'goal', 'g-1', 'p-1', 'text', 'concurrent_edit', '[{"dev":"647048b3-5305-4e36-be46-56c199471ca7","hlc":115671041179648010,"seq":9,"v":"Walk on Tuesdays"},{"dev":"89c3d772-4c72-48b3-97f4-87daa5dba805","hlc":115671041179648011,"seq":10,"v":"Walk on Thursdays"}]', 1, 'open', NULL, 11);
INSERT INTO practice (id, name) VALUES ('P1', 'P1');
INSERT INTO practice (id, name) VALUES ('P2', 'P2');
INSERT INTO quarantine (id, device_id, mutation_id, reason, detail, payload, at) VALUES (1, '89c3d772-4c72-48b3-97f4-87daa5dba805', 2, 'invalid_value', 'The given name of person p-2 holds a control character (U+001B).', '{"conflict_id":null,"fields":{"given_name":{"hlc":115671041179648020,"v":"\u001b[31mX"}},"hlc":115671041179648020,"mutation_id":2,"op":"insert","person_id":null,"row_id":"p-2","tbl":"person"}', 1765000041000);
INSERT INTO quarantine (id, device_id, mutation_id, reason, detail, payload, at) VALUES (2, '647048b3-5305-4e36-be46-56c199471ca7', 5, 'not_deletable', 'This kind of record cannot be deleted.', '{"conflict_id":null,"fields":{},"hlc":115671041179648030,"mutation_id":5,"op":"delete","person_id":"p-1","row_id":"c-1","tbl":"contact"}', 1765000054000);
INSERT INTO record (tbl, id, practice_id, person_id, "values", meta, deleted, seq, lookup) VALUES ('contact', 'c-1', 'P1', 'p-1', '{"mode":"phone","notes":"First call."}', '{"mode":{"dev":"647048b3-5305-4e36-be46-56c199471ca7","hlc":115671041179648002,"seq":4},"notes":{"dev":"647048b3-5305-4e36-be46-56c199471ca7","hlc":115671041179648002,"seq":4}}', 0, 6, NULL);
INSERT INTO record (tbl, id, practice_id, person_id, "values", meta, deleted, seq, lookup) VALUES ('goal', 'g-1', 'P1', 'p-1', '{"status":"active","text":"Walk on Thursdays"}', '{"status":{"dev":"647048b3-5305-4e36-be46-56c199471ca7","hlc":115671041179648001,"seq":3},"text":{"dev":"89c3d772-4c72-48b3-97f4-87daa5dba805","hlc":115671041179648011,"seq":10}}', 0, 10, NULL);
INSERT INTO record (tbl, id, practice_id, person_id, "values", meta, deleted, seq, lookup) VALUES ('person', 'b8a242d9-b659-5db6-a405-4f4ecfb46ea6', 'P1', 'b8a242d9-b659-5db6-a405-4f4ecfb46ea6', '{"date_of_birth":"1960-01-01","family_name":"Test","given_name":"Cy"}', '{"date_of_birth":{"dev":"server","hlc":115671043211264000,"seq":14},"family_name":{"dev":"server","hlc":115671043211264000,"seq":14},"given_name":{"dev":"server","hlc":115671043211264000,"seq":14}}', 0, 16, NULL);
INSERT INTO record (tbl, id, practice_id, person_id, "values", meta, deleted, seq, lookup) VALUES ('person', 'p-1', 'P1', 'p-1', '{"family_name":"Example","given_name":"Ada","nhs_number":"9434765919","status":"active"}', '{"family_name":{"dev":"647048b3-5305-4e36-be46-56c199471ca7","hlc":115671041179648000,"seq":1},"given_name":{"dev":"647048b3-5305-4e36-be46-56c199471ca7","hlc":115671041179648000,"seq":1},"nhs_number":{"dev":"647048b3-5305-4e36-be46-56c199471ca7","hlc":115671041179648000,"seq":1},"status":{"dev":"647048b3-5305-4e36-be46-56c199471ca7","hlc":115671041179648000,"seq":1}}', 0, 8, '9434765919');
INSERT INTO record (tbl, id, practice_id, person_id, "values", meta, deleted, seq, lookup) VALUES ('person', 'p-3', 'P1', 'p-3', '{"family_name":"Sample","given_name":"Bo"}', '{"family_name":{"dev":"89c3d772-4c72-48b3-97f4-87daa5dba805","hlc":115671041179648021,"seq":12},"given_name":{"dev":"89c3d772-4c72-48b3-97f4-87daa5dba805","hlc":115671041179648021,"seq":12}}', 0, 12, NULL);
INSERT INTO record (tbl, id, practice_id, person_id, "values", meta, deleted, seq, lookup) VALUES ('referral', '105471a3-fc6d-5da8-80bc-ec1861980289', 'P1', 'b8a242d9-b659-5db6-a405-4f4ecfb46ea6', '{"reasons":["loneliness"],"urgency":"routine"}', '{"reasons":{"dev":"server","hlc":115671043407872000,"seq":17},"urgency":{"dev":"server","hlc":115671043407872000,"seq":17}}', 0, 17, NULL);
INSERT INTO server_meta (id, epoch, tombstone_watermark, seq, hlc) VALUES (1, 'ae727413-8578-4c11-b91c-f434da961fcb', 0, 17, 115671043670016000);
INSERT INTO team (id, practice_id) VALUES ('T1', 'P1');
INSERT INTO worker (id, practice_id, team_id, created_at) VALUES ('asmith', 'P1', 'T1', 1765000001000);
INSERT INTO worker (id, practice_id, team_id, created_at) VALUES ('bjones', 'P1', 'T1', 1765000002000);
INSERT INTO worker (id, practice_id, team_id, created_at) VALUES ('cgreen', 'P2', NULL, 1765000003000);
INSERT INTO device (id, worker_id, practice_id, name, token_sha256, enrolled_at, revoked_at, last_acked_mutation_id, last_pull_seq, last_seen, retired_at, pending_reported, pending_reported_at) VALUES ('647048b3-5305-4e36-be46-56c199471ca7', 'asmith', 'P1', 'asmith-laptop', '08b5549b97e4968c11b52de1caa8cf04a626bd3b3a08b3e02643cad14cfe7cba', 1765000005000, NULL, 5, 0, 1765000054000, NULL, 0, 1765000014000);
INSERT INTO device (id, worker_id, practice_id, name, token_sha256, enrolled_at, revoked_at, last_acked_mutation_id, last_pull_seq, last_seen, retired_at, pending_reported, pending_reported_at) VALUES ('89c3d772-4c72-48b3-97f4-87daa5dba805', 'bjones', 'P1', 'bjones-laptop', '83948cebf16ec685dbdd934555e8aec9b459678e5c1099f7e48559b10de7a8dc', 1765000008000, NULL, 3, 0, 1765000043000, NULL, NULL, NULL);
INSERT INTO device (id, worker_id, practice_id, name, token_sha256, enrolled_at, revoked_at, last_acked_mutation_id, last_pull_seq, last_seen, retired_at, pending_reported, pending_reported_at) VALUES ('e7e1ad37-9b6b-4619-9174-1e3a45125e6f', 'cgreen', 'P2', 'cgreen-laptop', 'fb2cedbff439fcb351ab3823b9dc63cb3f4ec431daf7c4eaa3125342fe0e9740', 1765000011000, 1765000057000, 0, 0, 1765000011000, NULL, NULL, NULL);
INSERT INTO enrol_code (code_sha256, worker_id, expires_at, used_at, device_id) VALUES ('12defc46d84243dff3258f0e38eb165e3ded5cc4623b478ee25d57214e6fde79', 'asmith', 1765000904000, 1765000005000, '647048b3-5305-4e36-be46-56c199471ca7');
INSERT INTO enrol_code (code_sha256, worker_id, expires_at, used_at, device_id) VALUES ('56164b36271cc2b19700621b52cd2b63ca5cddca8137ba1e2dd09a714d3a25f4', 'asmith', 1765000913000, NULL, NULL);
INSERT INTO enrol_code (code_sha256, worker_id, expires_at, used_at, device_id) VALUES ('b88845f902d186c93ef7f6b00b73d5da690e22b853558f3d0c6cdc8d4a56ec39', 'cgreen', 1765000910000, 1765000011000, 'e7e1ad37-9b6b-4619-9174-1e3a45125e6f');
INSERT INTO enrol_code (code_sha256, worker_id, expires_at, used_at, device_id) VALUES ('fc0c3da590e20dba58c90dac852aaa5c02b4ef5596ed64213ab417456ac6512d', 'bjones', 1765000907000, 1765000008000, '89c3d772-4c72-48b3-97f4-87daa5dba805');
