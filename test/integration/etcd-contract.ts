/**
 * The contract suites against latchkey on etcd. Not a *.test.ts file: it
 * needs a running cluster, so test/integration/etcd.sh starts three members
 * and runs it with LK_ETCD_ENDPOINTS set. Each test gets a store under a
 * prefix of its own, deleted after.
 */
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { connectEtcd } from '../../src/etcd/store.js';
import { contractSuite, type Backend } from '../contract/suite.js';
import { lockContractSuite } from '../contract/locks.js';

const endpoints = process.env.LK_ETCD_ENDPOINTS;
if (endpoints === undefined) throw new Error('set LK_ETCD_ENDPOINTS=host:port,host:port,… (test/integration/etcd.sh does)');

export async function etcdBackend(): Promise<Backend> {
  const prefix = `/lk-test-${randomBytes(6).toString('hex')}`;
  const store = await connectEtcd(`etcd://${endpoints}/?prefix=${prefix}&ttl=5`);
  return {
    store,
    async cleanup() {
      const c = new Etcd3({ hosts: endpoints!.split(',').map((h) => `http://${h}`) });
      try {
        await c.delete().prefix(prefix + '/').exec();
        await c.delete().key(prefix + '/r').exec();
      } finally {
        c.close();
      }
    },
  };
}

contractSuite('etcd', etcdBackend);
lockContractSuite('etcd', etcdBackend);
