import { bigFileSuite } from './suite.js';

bigFileSuite('embedded');
